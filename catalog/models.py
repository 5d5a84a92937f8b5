"""Catalog: category tree, brands, products with specs and variants, wholesale tiers, price lists."""

from __future__ import annotations

from decimal import Decimal

from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from core.querysets import UpdateSignallingQuerySet

MONEY = {"max_digits": 18, "decimal_places": 2}
ZERO = Decimal("0.00")


class Category(models.Model):
    """A node of the category tree. ``path`` ("/3/17/") makes subtree queries one indexed LIKE."""

    parent = models.ForeignKey(
        "self", null=True, blank=True, related_name="children", on_delete=models.PROTECT, verbose_name=_("parent")
    )
    name = models.CharField(_("name"), max_length=120)
    slug = models.SlugField(_("slug"), max_length=140, unique=True, allow_unicode=True)
    icon = models.CharField(_("icon"), max_length=16, blank=True, help_text=_("An emoji shown in navigation."))
    description = models.TextField(_("description"), blank=True)
    sort_order = models.PositiveIntegerField(_("sort order"), default=0)
    is_active = models.BooleanField(_("active"), default=True)
    path = models.CharField(max_length=255, editable=False, db_index=True, default="")
    depth = models.PositiveSmallIntegerField(editable=False, default=0)

    objects = UpdateSignallingQuerySet.as_manager()

    class Meta:
        verbose_name = _("category")
        verbose_name_plural = _("categories")
        ordering = ["path"]
        indexes = [GinIndex(SearchVector("name", config="simple"), name="category_name_fts")]

    def __str__(self) -> str:
        return f"{'— ' * self.depth}{self.name}"

    def save(self, *args, **kwargs):
        # The materialised path is derived data of the tree; keep it (and the subtree's) in step
        # whatever saves the row (admin, import, services).
        old_path = self.path
        super().save(*args, **kwargs)
        parent_path = Category.objects.get(pk=self.parent_id).path if self.parent_id else "/"
        new_path = f"{parent_path}{self.pk}/"
        if new_path == old_path:
            return
        depth = new_path.count("/") - 2
        Category.objects.filter(pk=self.pk).update(path=new_path, depth=depth)
        if old_path:
            from django.db.models import F, Value
            from django.db.models.functions import Concat, Substr

            Category.objects.filter(path__startswith=old_path).exclude(pk=self.pk).update(
                path=Concat(Value(new_path), Substr("path", len(old_path) + 1)),
                depth=F("depth") + (depth - self.depth),
            )
        self.path, self.depth = new_path, depth

    def clean(self):
        if self.pk and self.parent_id:
            parent = Category.objects.get(pk=self.parent_id)
            if parent.pk == self.pk or parent.path.startswith(self.path or f"/{self.pk}/"):
                raise ValidationError({"parent": _("A category cannot be placed inside itself.")})

    def subtree_filter(self, prefix: str = "") -> Q:
        """``Q`` selecting rows whose category lies in this subtree (``prefix`` = lookup to it)."""
        return Q(**{f"{prefix}path__startswith": self.path})


class Brand(models.Model):
    name = models.CharField(_("name"), max_length=120, unique=True)
    slug = models.SlugField(_("slug"), max_length=140, unique=True, allow_unicode=True)
    logo = models.ImageField(_("logo"), upload_to="brands/", blank=True)

    class Meta:
        verbose_name = _("brand")
        verbose_name_plural = _("brands")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Product(models.Model):
    class DeliveryMode(models.TextChoices):
        AUTOMATIC = "automatic", _("Automatic (from the code vault)")
        MANUAL = "manual", _("Manual (fulfilled by staff)")
        UPSTREAM = "upstream", _("From Site A (bought when ordered)")

    category = models.ForeignKey(
        Category, on_delete=models.PROTECT, related_name="products", verbose_name=_("category")
    )
    brand = models.ForeignKey(
        Brand, null=True, blank=True, on_delete=models.SET_NULL, related_name="products", verbose_name=_("brand")
    )
    name = models.CharField(_("name"), max_length=200)
    slug = models.SlugField(_("slug"), max_length=220, unique=True, allow_unicode=True)
    description = models.TextField(_("description"), blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    delivery_mode = models.CharField(
        _("delivery"), max_length=16, choices=DeliveryMode.choices, default=DeliveryMode.AUTOMATIC
    )
    min_quantity = models.PositiveIntegerField(_("minimum per order"), default=1, validators=[MinValueValidator(1)])
    max_quantity = models.PositiveIntegerField(_("maximum per order"), default=20, validators=[MinValueValidator(1)])
    # Extra inputs a customer fills in at checkout for manual goods, e.g.
    # [{"name": "account", "label": "Account to top up", "required": true}]
    checkout_fields = models.JSONField(_("checkout fields"), default=list, blank=True)
    sort_order = models.PositiveIntegerField(_("sort order"), default=0)
    # Set on a branch's copy of a Site A product (synced by branch_api.upstream).
    upstream_id = models.BigIntegerField(null=True, blank=True, unique=True, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("product")
        verbose_name_plural = _("products")
        ordering = ["sort_order", "name"]
        indexes = [
            # Live search: prefix full-text match on the name (see catalog.selectors.product_search).
            GinIndex(SearchVector("name", config="simple"), name="product_name_fts"),
            models.Index(fields=["category", "is_active", "sort_order"], name="product_listing"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(max_quantity__gte=models.F("min_quantity")), name="product_qty_range"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_manual(self) -> bool:
        return self.delivery_mode == self.DeliveryMode.MANUAL

    @property
    def is_upstream(self) -> bool:
        return self.delivery_mode == self.DeliveryMode.UPSTREAM


class ProductImage(models.Model):
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="images")
    image = models.ImageField(_("image"), upload_to="products/")
    alt = models.CharField(_("alternative text"), max_length=200, blank=True)
    sort_order = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["sort_order", "pk"]

    def __str__(self) -> str:
        return self.alt or f"image #{self.pk}"


class Spec(models.Model):
    """A dimension products vary along, e.g. Region or Denomination."""

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="specs")
    name = models.CharField(_("name"), max_length=60)
    sort_order = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["sort_order", "pk"]
        constraints = [models.UniqueConstraint(fields=["product", "name"], name="spec_unique_name")]

    def __str__(self) -> str:
        return self.name


class SpecValue(models.Model):
    spec = models.ForeignKey(Spec, on_delete=models.CASCADE, related_name="values")
    value = models.CharField(_("value"), max_length=60)
    sort_order = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["sort_order", "pk"]
        constraints = [models.UniqueConstraint(fields=["spec", "value"], name="specvalue_unique")]

    def __str__(self) -> str:
        return f"{self.spec.name}: {self.value}"


class Variant(models.Model):
    """A sellable combination of spec values, with its own SKU, list price and cost."""

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="variants")
    sku = models.CharField(_("SKU"), max_length=64, unique=True)
    name = models.CharField(_("name"), max_length=120, help_text=_("e.g. 'US / $25'"))
    spec_values = models.ManyToManyField(SpecValue, blank=True, related_name="variants")
    price = models.DecimalField(_("price"), **MONEY, validators=[MinValueValidator(ZERO)])
    cost = models.DecimalField(
        _("cost"),
        **MONEY,
        default=ZERO,
        validators=[MinValueValidator(ZERO)],
        help_text=_("Reference cost; delivered codes book the actual cost of their import batch."),
    )
    is_active = models.BooleanField(_("active"), default=True)
    # For manual goods only: how many can be sold (empty = unlimited). Vault stock is counted.
    manual_stock = models.PositiveIntegerField(_("manual stock"), null=True, blank=True)
    # A branch's copy of a Site A variant: its id there, and Site A's stock as of the last sync
    # (None = unlimited). The storefront never asks Site A while rendering.
    upstream_id = models.BigIntegerField(null=True, blank=True, unique=True, editable=False)
    upstream_stock = models.PositiveIntegerField(null=True, blank=True, editable=False)
    sort_order = models.PositiveIntegerField(default=0)
    updated = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        verbose_name = _("variant")
        verbose_name_plural = _("variants")
        ordering = ["sort_order", "pk"]

    def __str__(self) -> str:
        return f"{self.product.name} — {self.name}" if self.name else self.product.name


class WholesaleTier(models.Model):
    """A quantity break: buying at least ``min_quantity`` costs the customer ``unit_price`` each, and/or
    costs the shop ``unit_cost`` each (a branch's wholesale cost at Site A, copied by the sync), to
    which the price list's markup is applied."""

    variant = models.ForeignKey(Variant, on_delete=models.CASCADE, related_name="tiers")
    min_quantity = models.PositiveIntegerField(_("from quantity"), validators=[MinValueValidator(2)])
    unit_price = models.DecimalField(
        _("unit price"),
        **MONEY,
        null=True,
        blank=True,
        validators=[MinValueValidator(ZERO)],
        help_text=_("The customer's price from this quantity. Empty: the price list prices the tier's cost."),
    )
    unit_cost = models.DecimalField(
        _("unit cost"),
        **MONEY,
        null=True,
        blank=True,
        validators=[MinValueValidator(ZERO)],
        help_text=_("The cost from this quantity (for a product from Site A: Site A's wholesale price)."),
    )

    class Meta:
        ordering = ["min_quantity"]
        constraints = [
            models.UniqueConstraint(fields=["variant", "min_quantity"], name="tier_unique_break"),
            models.CheckConstraint(
                name="tier_price_or_cost", condition=Q(unit_price__isnull=False) | Q(unit_cost__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        if self.unit_price is None:
            return f"{self.min_quantity}+ at cost {self.unit_cost}"
        return f"{self.min_quantity}+ @ {self.unit_price}"


class PriceList(models.Model):
    """A set of pricing rules. The storefront uses the default list; the branch network gives each
    branch its own list on Site A (its cost) and the branch its own storefront list."""

    name = models.CharField(_("name"), max_length=120)
    code = models.SlugField(_("code"), max_length=60, unique=True)
    is_default = models.BooleanField(_("storefront default"), default=False)
    created = models.DateTimeField(auto_now_add=True)

    objects = UpdateSignallingQuerySet.as_manager()

    class Meta:
        verbose_name = _("price list")
        verbose_name_plural = _("price lists")
        constraints = [
            models.UniqueConstraint(fields=["is_default"], condition=Q(is_default=True), name="one_default_price_list")
        ]

    def __str__(self) -> str:
        return self.name


class PriceRule(models.Model):
    class Scope(models.TextChoices):
        ALL = "all", _("Everything")
        CATEGORY = "category", _("Category (and its subcategories)")
        PRODUCT = "product", _("Product")
        VARIANT = "variant", _("Variant")

    class Mode(models.TextChoices):
        PERCENT_MARKUP = "percent", _("Markup on cost, %")
        FIXED_MARKUP = "fixed_markup", _("Markup on cost, amount")
        FIXED_PRICE = "fixed_price", _("Fixed price")

    class Rounding(models.TextChoices):
        NONE = "none", _("To the cent")
        ENDING_99 = "99", _("Up to .99")
        WHOLE = "whole", _("Up to a whole unit")

    price_list = models.ForeignKey(PriceList, on_delete=models.CASCADE, related_name="rules")
    scope = models.CharField(_("applies to"), max_length=16, choices=Scope.choices, default=Scope.ALL)
    category = models.ForeignKey(Category, null=True, blank=True, on_delete=models.CASCADE)
    product = models.ForeignKey(Product, null=True, blank=True, on_delete=models.CASCADE)
    variant = models.ForeignKey(Variant, null=True, blank=True, on_delete=models.CASCADE)
    mode = models.CharField(_("mode"), max_length=16, choices=Mode.choices, default=Mode.PERCENT_MARKUP)
    value = models.DecimalField(_("value"), max_digits=18, decimal_places=4)
    rounding = models.CharField(_("rounding"), max_length=8, choices=Rounding.choices, default=Rounding.NONE)
    is_active = models.BooleanField(_("active"), default=True)
    updated = models.DateTimeField(auto_now=True)

    objects = UpdateSignallingQuerySet.as_manager()

    class Meta:
        verbose_name = _("price rule")
        verbose_name_plural = _("price rules")
        constraints = [
            models.CheckConstraint(
                name="pricerule_scope_target",
                condition=(
                    Q(scope="all", category__isnull=True, product__isnull=True, variant__isnull=True)
                    | Q(scope="category", category__isnull=False, product__isnull=True, variant__isnull=True)
                    | Q(scope="product", product__isnull=False, category__isnull=True, variant__isnull=True)
                    | Q(scope="variant", variant__isnull=False, category__isnull=True, product__isnull=True)
                ),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_scope_display()}: {self.get_mode_display()} {self.value}"

    def clean(self):
        targets = {"category": self.category_id, "product": self.product_id, "variant": self.variant_id}
        for name, value in targets.items():
            if name == self.scope and not value:
                raise ValidationError({name: _("Choose the %(target)s this rule applies to.") % {"target": name}})
            if name != self.scope and value:
                raise ValidationError({name: _("Only the target of the rule's scope may be set.")})
        if self.mode == self.Mode.PERCENT_MARKUP and self.value is not None and self.value < -100:
            raise ValidationError({"value": _("A markup cannot be below −100%.")})
