"""Catalog admin: category tree, brands, products with variants, price lists and bulk price changes."""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import Count
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin, TabularInline
from unfold.decorators import action, display
from unfold.widgets import UnfoldAdminDecimalFieldWidget, UnfoldAdminSelectWidget

from cardvault.services import variant_stock
from catalog.models import (
    Brand,
    Category,
    PriceList,
    PriceRule,
    Product,
    ProductImage,
    Spec,
    SpecValue,
    Variant,
    WholesaleTier,
)
from catalog.services import variants_adjust_price, variants_set_price


@admin.register(Category)
class CategoryAdmin(ModelAdmin):
    list_display = ["indented_name", "parent", "icon", "sort_order", "is_active"]
    list_display_links = ["indented_name"]
    list_editable = ["sort_order", "is_active"]
    list_filter = ["is_active"]
    search_fields = ["name", "slug"]
    ordering = ["path"]
    list_select_related = ["parent"]
    prepopulated_fields = {"slug": ["name"]}
    autocomplete_fields = ["parent"]
    fields = ["name", "slug", "parent", "icon", "description", "sort_order", "is_active"]

    @display(description=_("Name"), ordering="path")
    def indented_name(self, obj: Category):
        # Depth from the materialised path: the changelist shows the tree in path order.
        return format_html('<span style="padding-left: {}rem">{} {}</span>', obj.depth * 1.5, obj.icon, obj.name)

    def view_on_site(self, obj: Category):
        return reverse("category", args=[obj.slug])


@admin.register(Brand)
class BrandAdmin(ModelAdmin):
    list_display = ["name", "slug", "product_count"]
    search_fields = ["name"]
    prepopulated_fields = {"slug": ["name"]}

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(product_count=Count("products"))

    @display(description=_("Products"), ordering="product_count")
    def product_count(self, obj: Brand) -> int:
        return obj.product_count


class VariantInline(TabularInline):
    model = Variant
    fields = ["sku", "name", "price", "cost", "is_active", "manual_stock"]
    extra = 0
    show_change_link = True  # tiers and spec values are edited on the variant's own page


class SpecInline(TabularInline):
    model = Spec
    fields = ["name", "sort_order"]
    extra = 0
    show_change_link = True  # the spec's values are edited on its own page


class ProductImageInline(TabularInline):
    model = ProductImage
    fields = ["image", "alt", "sort_order"]
    extra = 0


@admin.register(Product)
class ProductAdmin(ModelAdmin):
    list_display = ["name", "category", "brand", "delivery_display", "variant_count", "is_active"]
    list_filter = ["category", "is_active", "delivery_mode"]
    search_fields = ["name", "variants__sku"]
    list_select_related = ["category", "brand"]
    prepopulated_fields = {"slug": ["name"]}
    autocomplete_fields = ["category", "brand"]
    inlines = [VariantInline, SpecInline, ProductImageInline]
    fieldsets = [
        (None, {"fields": ["name", "slug", "category", "brand", "description", "is_active", "sort_order"]}),
        (
            _("Ordering and delivery"),
            {"fields": ["delivery_mode", "min_quantity", "max_quantity", "checkout_fields"]},
        ),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(variant_count=Count("variants"))

    @display(description=_("Variants"), ordering="variant_count")
    def variant_count(self, obj: Product) -> int:
        return obj.variant_count

    @display(
        description=_("Delivery"),
        label={Product.DeliveryMode.AUTOMATIC: "success", Product.DeliveryMode.MANUAL: "warning"},
    )
    def delivery_display(self, obj: Product):
        return obj.delivery_mode

    def view_on_site(self, obj: Product):
        return reverse("product", args=[obj.slug])

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        # Branches selling this product hear about it (Site A only; sent after commit).
        from branch_api.provider.webhooks import webhook_emit_price_changed, webhook_emit_product_updated

        webhook_emit_product_updated([form.instance.pk])
        webhook_emit_price_changed(product_ids=[form.instance.pk])


class SpecValueInline(TabularInline):
    model = SpecValue
    fields = ["value", "sort_order"]
    extra = 0


@admin.register(Spec)
class SpecAdmin(ModelAdmin):
    """Reached from a product's specs (not listed in the navigation): a spec and its values."""

    list_display = ["name", "product"]
    search_fields = ["name", "product__name"]
    autocomplete_fields = ["product"]
    inlines = [SpecValueInline]

    def has_module_permission(self, request):
        return False


class WholesaleTierInline(TabularInline):
    model = WholesaleTier
    fields = ["min_quantity", "unit_price", "unit_cost"]
    extra = 0


class AdjustPricesForm(forms.Form):
    PERCENT, SET = "percent", "set"

    field = forms.ChoiceField(
        label=_("Change"),
        choices=[("price", _("Price")), ("cost", _("Cost"))],
        widget=UnfoldAdminSelectWidget,
    )
    mode = forms.ChoiceField(
        label=_("How"),
        choices=[(PERCENT, _("By a percentage (e.g. 10 or -5)")), (SET, _("Set to an amount"))],
        widget=UnfoldAdminSelectWidget,
    )
    value = forms.DecimalField(
        label=_("Value"),
        max_digits=12,
        decimal_places=2,
        widget=UnfoldAdminDecimalFieldWidget,
        help_text=_("Prices never go below zero; results are rounded to the cent."),
    )

    def clean(self):
        data = super().clean()
        value: Decimal | None = data.get("value")
        if value is None:
            return data
        if data.get("mode") == self.SET and value < 0:
            self.add_error("value", _("An amount cannot be negative."))
        if data.get("mode") == self.PERCENT and not Decimal(-100) <= value <= Decimal(1000):
            self.add_error("value", _("Choose a percentage between -100 and 1000."))
        return data


@admin.register(Variant)
class VariantAdmin(ModelAdmin):
    list_display = ["sku", "name", "product", "price", "cost", "stock", "is_active"]
    list_filter = ["is_active", "product__delivery_mode", "product__category"]
    search_fields = ["sku", "name", "product__name"]
    list_select_related = ["product"]
    autocomplete_fields = ["product"]
    inlines = [WholesaleTierInline]
    fields = ["product", "sku", "name", "spec_values", "price", "cost", "is_active", "manual_stock", "sort_order"]
    actions = ["adjust_prices"]

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        # Vault stock of the visible page in one query, not one per row (the page's rows are cached
        # on the changelist, so the values set here are the ones rendered).
        rows = list(changelist.result_list)
        stock = variant_stock(v.pk for v in rows)
        for variant in rows:
            variant.vault_stock = stock.get(variant.pk, 0)
        return changelist

    @display(description=_("Stock"))
    def stock(self, obj: Variant):
        value = obj.manual_stock if obj.product.is_manual else getattr(obj, "vault_stock", 0)
        return "∞" if value is None else value

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "spec_values":
            # Only the values of the variant's own product's specs.
            object_id = request.resolver_match.kwargs.get("object_id") if request.resolver_match else None
            product_id = Variant.objects.filter(pk=object_id).values("product_id")[:1] if object_id else None
            queryset = SpecValue.objects.select_related("spec")
            kwargs["queryset"] = queryset.filter(spec__product_id__in=product_id) if product_id else queryset.none()
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    @action(description=_("Adjust prices"), permissions=["change"])
    def adjust_prices(self, request, queryset):
        form = AdjustPricesForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            ids = list(queryset.values_list("pk", flat=True))
            field, value = form.cleaned_data["field"], form.cleaned_data["value"]
            if form.cleaned_data["mode"] == AdjustPricesForm.SET:
                count = variants_set_price(variant_ids=ids, amount=value, field=field)
            else:
                count = variants_adjust_price(variant_ids=ids, percent=value, field=field)
            from branch_api.provider.webhooks import webhook_emit_price_changed

            webhook_emit_price_changed(variant_ids=ids)  # on Site A: the branches that see them hear it now
            self.message_user(request, _("%(count)d variant(s) updated.") % {"count": count}, messages.SUCCESS)
            return None  # back to the changelist
        context = {
            **self.admin_site.each_context(request),
            "title": _("Adjust prices"),
            "opts": self.model._meta,
            "form": form,
            "variants": queryset.select_related("product"),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "action_name": "adjust_prices",
        }
        return TemplateResponse(request, "admin/catalog/variant/adjust_prices.html", context)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        from branch_api.provider.webhooks import webhook_emit_price_changed

        webhook_emit_price_changed(variant_ids=[form.instance.pk])


class PriceRuleInline(TabularInline):
    model = PriceRule
    fields = ["scope", "category", "product", "variant", "mode", "value", "rounding", "is_active"]
    autocomplete_fields = ["category", "product", "variant"]
    extra = 0


@admin.register(PriceList)
class PriceListAdmin(ModelAdmin):
    list_display = ["name", "code", "is_default", "rule_count", "created"]
    search_fields = ["name", "code"]
    prepopulated_fields = {"code": ["name"]}
    inlines = [PriceRuleInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(rule_count=Count("rules"))

    @display(description=_("Rules"), ordering="rule_count")
    def rule_count(self, obj: PriceList) -> int:
        return obj.rule_count

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        from branch_api.provider.webhooks import webhook_emit_price_changed

        webhook_emit_price_changed(price_list_id=form.instance.pk)
