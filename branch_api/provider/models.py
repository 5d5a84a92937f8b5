"""Site A's side of the branch network (public schema only)."""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.utils.translation import gettext_lazy as _

from catalog.models import MONEY, Category, PriceList, Product
from core.querysets import UpdateSignallingQuerySet
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
    hidden_products = models.ManyToManyField(
        Product,
        blank=True,
        related_name="+",
        verbose_name=_("hidden products"),
        help_text=_("Never shown to this branch, even inside a visible category or with the whole catalog visible."),
    )
    show_everything = models.BooleanField(_("whole catalog visible"), default=False)
    low_balance_threshold = models.DecimalField(_("low-balance alert below"), **MONEY, default=Decimal("50.00"))
    ip_allowlist = models.TextField(
        _("IP allowlist"), blank=True, help_text=_("One CIDR per line (e.g. 203.0.113.0/24). Empty: any address.")
    )
    rate_per_minute = models.PositiveIntegerField(_("requests per minute"), default=600)
    updated = models.DateTimeField(auto_now=True)

    objects = UpdateSignallingQuerySet.as_manager()

    class Meta:
        verbose_name = _("branch terms")
        verbose_name_plural = _("branch terms")

    def __str__(self) -> str:
        return f"Terms of {self.branch}"

    def clean(self) -> None:
        from django.conf import settings
        from django.core.exceptions import ValidationError

        if (
            self.mode == self.Mode.PLATFORM_COLLECT
            and self.branch_id is not None
            and self.branch.currency != settings.PLATFORM_CURRENCY
        ):
            raise ValidationError(
                {"mode": _("Site A collects in %(currency)s only.") % {"currency": settings.PLATFORM_CURRENCY}}
            )


class ApiCredential(models.Model):
    branch = models.ForeignKey(Branch, on_delete=models.CASCADE, related_name="api_credentials")
    prefix = models.CharField(max_length=16, unique=True)
    secret_sha256 = models.CharField(max_length=64)
    signing_secret_encrypted = models.TextField()
    label = models.CharField(max_length=80, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = UpdateSignallingQuerySet.as_manager()

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


# --- Outbound webhooks (services in branch_api.provider.webhooks) ---------------------------------


class WebhookEndpoint(models.Model):
    """A URL of a branch that Site A sends Standard Webhooks to, signed with its own ``whsec_`` secret."""

    branch = models.ForeignKey(Branch, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(_("URL"), max_length=500)
    description = models.CharField(_("description"), max_length=200, blank=True)
    # "whsec_<base64 of 24 random bytes>", encrypted (AES-GCM, bound to the branch).
    secret_encrypted = models.TextField(editable=False)
    events = models.JSONField(_("events"), default=list, blank=True, help_text=_("Event types; empty: all events."))
    is_active = models.BooleanField(_("active"), default=True)
    disabled_at = models.DateTimeField(_("disabled at"), null=True, blank=True)
    disabled_reason = models.CharField(_("disabled because"), max_length=255, blank=True)
    # Failed attempts since the last success, and when that run of failures began (auto-disable).
    consecutive_failures = models.PositiveIntegerField(_("consecutive failures"), default=0)
    failing_since = models.DateTimeField(_("failing since"), null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    objects = UpdateSignallingQuerySet.as_manager()

    class Meta:
        verbose_name = _("webhook endpoint")
        verbose_name_plural = _("webhook endpoints")
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"{self.branch.slug}: {self.url}"


class WebhookDelivery(models.Model):
    """One event for one endpoint; ``message_id`` is the ``webhook-id`` header, the same on every retry
    and replay (receivers deduplicate on it)."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")  # waiting for its next attempt
        SUCCEEDED = "succeeded", _("Succeeded")  # a 2xx answer
        FAILED = "failed", _("Failed")  # stopped early: 410 Gone, or the endpoint was disabled
        GAVE_UP = "gave_up", _("Gave up")  # every attempt of the retry schedule failed

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    message_id = models.CharField(_("webhook-id"), max_length=40, unique=True)
    event_type = models.CharField(_("event"), max_length=64)
    # The whole body sent: {"type", "timestamp", "data"}; identical on every attempt.
    payload = models.JSONField()
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    status = models.CharField(_("status"), max_length=12, choices=Status.choices, default=Status.PENDING)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(_("last HTTP status"), null=True, blank=True)
    last_error = models.CharField(_("last error"), max_length=255, blank=True)
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)

    class Meta:
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        ordering = ["-created", "-pk"]
        indexes = [
            models.Index(fields=["next_attempt_at"], name="webhook_delivery_due", condition=models.Q(status="pending")),
            models.Index(fields=["endpoint", "-created"], name="webhook_delivery_endpoint"),
        ]

    def __str__(self) -> str:
        return f"{self.message_id} {self.event_type} ({self.status})"


class BalanceTopUp(models.Model):
    """A branch paying money into its balance through one of Site A's payment channels."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Waiting for payment")
        PAID = "paid", _("Paid")

    branch = models.ForeignKey(Branch, on_delete=models.PROTECT, related_name="top_ups")
    amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    return_url = models.URLField(max_length=500, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    paid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("balance top-up")
        verbose_name_plural = _("balance top-ups")
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.branch.slug} +{self.amount} {self.currency} ({self.status})"


class BranchSale(models.Model):
    """A branch customer's order paid through Site A's channels (platform-collect mode).

    Site A books what it collects to the branch's balance (once per payment attempt), then marks the
    branch's order paid in the branch's schema (``settled_at``), which starts the usual upstream
    purchase at cost.
    """

    branch = models.ForeignKey(Branch, on_delete=models.PROTECT, related_name="sales")
    order_number = models.CharField(_("branch order"), max_length=32)
    order_id = models.BigIntegerField()  # the order's id in the branch's schema
    amount = models.DecimalField(_("amount"), **MONEY)
    currency = models.CharField(max_length=3)
    return_url = models.URLField(max_length=500, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    collected_at = models.DateTimeField(_("collected at"), null=True, blank=True)
    settled_at = models.DateTimeField(_("branch order marked paid at"), null=True, blank=True)
    last_error = models.CharField(max_length=255, blank=True)
    # Second payments of the order (the customer paid twice) not yet given back; never the branch's.
    duplicate_owed = models.DecimalField(_("second payments owed to the customer"), **MONEY, default=0)

    class Meta:
        verbose_name = _("branch sale")
        verbose_name_plural = _("branch sales")
        ordering = ["-created"]
        constraints = [models.UniqueConstraint(fields=["branch", "order_number"], name="branch_sale_once")]

    def __str__(self) -> str:
        return f"{self.branch.slug}:{self.order_number} {self.amount} {self.currency}"


class BranchSaleRefund(models.Model):
    """A refund Site A's gateway reported for the collected payment of a branch sale, once per gateway
    refund id (``payments.refunds.collected_refund_notice_apply``).

    ``booked`` is the part this refund booked itself (recorded on the branch's order as refunded in
    Site A's gateway); the rest of ``amount`` had already been booked by a refund the branch recorded
    by hand (*outside*). A refund the gateway failed counts for nothing.
    """

    sale = models.ForeignKey(BranchSale, on_delete=models.PROTECT, related_name="gateway_refunds")
    provider = models.CharField(_("payment method"), max_length=32)
    gateway_refund_id = models.CharField(_("gateway refund id"), max_length=128)
    amount = models.DecimalField(_("amount"), **MONEY)
    gateway_status = models.CharField(_("gateway status"), max_length=32)
    booked = models.DecimalField(_("booked by this refund"), **MONEY, default=0)
    refund_token = models.CharField(max_length=64, blank=True)  # the branch's Refund for ``booked``
    created = models.DateTimeField(_("created"), auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("gateway refund of a branch sale")
        verbose_name_plural = _("gateway refunds of branch sales")
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "gateway_refund_id"], name="branch_sale_refund_once"),
            models.CheckConstraint(
                name="branch_sale_refund_booked_within_amount",
                condition=models.Q(booked__gte=0, booked__lte=models.F("amount")),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.gateway_refund_id} {self.amount} ({self.gateway_status})"
