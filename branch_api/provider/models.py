"""Site A's side of the branch network (public schema only)."""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.utils.translation import gettext_lazy as _

from catalog.models import MONEY, Category, PriceList, Product
from tenants.models import Branch


class BranchTerms(models.Model):
    """What a branch may buy from Site A and at what cost."""

    class Mode(models.TextChoices):
        OWN_GATEWAY = "own_gateway", _("Own payment channels (branch pre-pays its balance)")
        PLATFORM_COLLECT = "platform_collect", _("Site A collects (profit credited to the balance)")

    branch = models.OneToOneField(Branch, on_delete=models.CASCADE, related_name="terms")
    price_list = models.ForeignKey(
        PriceList,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        help_text=_("Site A's prices for this branch (its cost). Empty: Site A's list prices."),
    )
    mode = models.CharField(_("mode"), max_length=20, choices=Mode.choices, default=Mode.OWN_GATEWAY)
    visible_categories = models.ManyToManyField(
        Category, blank=True, related_name="+", help_text=_("Whole categories (and their subcategories).")
    )
    visible_products = models.ManyToManyField(Product, blank=True, related_name="+")
    show_everything = models.BooleanField(_("whole catalog visible"), default=False)
    low_balance_threshold = models.DecimalField(_("low-balance alert below"), **MONEY, default=Decimal("50.00"))
    ip_allowlist = models.TextField(
        _("IP allowlist"), blank=True, help_text=_("One CIDR per line (e.g. 203.0.113.0/24). Empty: any address.")
    )
    rate_per_minute = models.PositiveIntegerField(_("requests per minute"), default=600)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("branch terms")
        verbose_name_plural = _("branch terms")

    def __str__(self) -> str:
        return f"Terms of {self.branch}"


class ApiCredential(models.Model):
    branch = models.ForeignKey(Branch, on_delete=models.CASCADE, related_name="api_credentials")
    prefix = models.CharField(max_length=16, unique=True)
    secret_sha256 = models.CharField(max_length=64)
    signing_secret_encrypted = models.TextField()
    label = models.CharField(max_length=80, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("API credential")
        verbose_name_plural = _("API credentials")
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.branch.slug})"


class ApiAuditLog(models.Model):
    branch = models.ForeignKey(Branch, null=True, blank=True, on_delete=models.SET_NULL)
    key_prefix = models.CharField(max_length=16, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=255)
    idempotency_key = models.CharField(max_length=128, blank=True)
    status_code = models.PositiveSmallIntegerField()
    error_code = models.CharField(max_length=48, blank=True)
    latency_ms = models.FloatField(default=0)
    request_sha256 = models.CharField(max_length=64, blank=True)
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("API call")
        verbose_name_plural = _("API audit log")
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.method} {self.path} → {self.status_code}"


class IdempotencyRecord(models.Model):
    class State(models.TextChoices):
        IN_FLIGHT = "in_flight", _("In flight")
        DONE = "done", _("Done")

    branch = models.ForeignKey(Branch, on_delete=models.CASCADE)
    key = models.CharField(max_length=128)
    fingerprint = models.CharField(max_length=64)
    state = models.CharField(max_length=12, choices=State.choices, default=State.IN_FLIGHT)
    response_status = models.PositiveSmallIntegerField(null=True)
    response_body = models.JSONField(null=True)
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["branch", "key"], name="idempotency_once_per_branch")]

    def __str__(self) -> str:
        return f"{self.branch_id}:{self.key} ({self.state})"


class BranchPurchase(models.Model):
    """An order a branch placed at Site A (its codes were delivered on Site A's order)."""

    branch = models.ForeignKey(Branch, on_delete=models.PROTECT, related_name="purchases")
    reference = models.CharField(max_length=128)
    order = models.OneToOneField("orders.Order", on_delete=models.PROTECT, related_name="branch_purchase")
    total = models.DecimalField(**MONEY)
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created"]
        constraints = [models.UniqueConstraint(fields=["branch", "reference"], name="branch_reference_once")]

    def __str__(self) -> str:
        return f"{self.branch.slug}:{self.reference}"
