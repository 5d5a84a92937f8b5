"""Orders, their lines (price snapshots), status history and fulfilment notes."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from catalog.models import MONEY, Variant


class Order(models.Model):
    class Status(models.TextChoices):
        PENDING_PAYMENT = "pending_payment", _("Awaiting payment")
        PAID = "paid", _("Paid")
        DELIVERED = "delivered", _("Delivered")
        AWAITING_STOCK = "awaiting_stock", _("Paid — awaiting stock")
        MANUAL_FULFILMENT = "manual_fulfilment", _("Paid — being fulfilled by staff")
        AWAITING_UPSTREAM = "awaiting_upstream", _("Paid — being bought from the supplier")
        EXPIRED = "expired", _("Expired")
        CANCELLED = "cancelled", _("Cancelled")
        REFUNDED = "refunded", _("Refunded")
        PARTIALLY_REFUNDED = "partially_refunded", _("Partially refunded")

    class Source(models.TextChoices):
        STOREFRONT = "storefront", _("Storefront")
        BRANCH_API = "branch_api", _("Branch API")

    number = models.CharField(_("order number"), max_length=32, unique=True)
    source = models.CharField(_("channel"), max_length=16, choices=Source.choices, default=Source.STOREFRONT)
    status = models.CharField(
        _("status"), max_length=20, choices=Status.choices, default=Status.PENDING_PAYMENT, db_index=True
    )
    customer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="orders"
    )
    email = models.EmailField(_("e-mail"))
    lookup_password = models.CharField(max_length=255, blank=True)  # hashed; guests look orders up with it
    currency = models.CharField(_("currency"), max_length=3)
    total = models.DecimalField(_("total"), **MONEY)
    payment_provider = models.CharField(_("payment method"), max_length=32, blank=True)
    created = models.DateTimeField(_("created"), auto_now_add=True, db_index=True)
    expires_at = models.DateTimeField(_("payment due by"))
    paid_at = models.DateTimeField(_("paid at"), null=True, blank=True)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)
    delivery_email_sent_at = models.DateTimeField(null=True, blank=True, editable=False)
    client_ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        verbose_name = _("order")
        verbose_name_plural = _("orders")
        ordering = ["-created"]
        indexes = [models.Index(fields=["status", "expires_at"], name="order_status_expiry")]

    def __str__(self) -> str:
        return self.number

    @property
    def is_final(self) -> bool:
        return self.status in {
            self.Status.DELIVERED,
            self.Status.EXPIRED,
            self.Status.CANCELLED,
            self.Status.REFUNDED,
            self.Status.PARTIALLY_REFUNDED,
        }


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    variant = models.ForeignKey(Variant, on_delete=models.PROTECT, related_name="order_lines")
    product_id_snapshot = models.BigIntegerField()
    product_name = models.CharField(max_length=200)
    variant_name = models.CharField(max_length=120, blank=True)
    sku = models.CharField(max_length=64)
    delivery_mode = models.CharField(max_length=16)
    quantity = models.PositiveIntegerField()
    unit_price = models.DecimalField(**MONEY)
    unit_cost = models.DecimalField(**MONEY)  # reference cost at sale; delivery books the batch cost
    price_rule = models.CharField(max_length=160, blank=True)  # which rule priced it
    currency = models.CharField(max_length=3)
    checkout_input = models.JSONField(default=dict, blank=True)  # e.g. the account to top up
    delivered_quantity = models.PositiveIntegerField(default=0)
    fulfilment_note = models.TextField(blank=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"{self.product_name} {self.variant_name} × {self.quantity}"

    @property
    def line_total(self):
        return self.unit_price * self.quantity


class OrderEvent(models.Model):
    """Status history: every transition, who caused it and why."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events")
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    message = models.CharField(max_length=255, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created", "pk"]

    def __str__(self) -> str:
        return f"{self.from_status} → {self.to_status}"


class ManualDelivery(models.Model):
    """What staff delivered by hand for a manual line: codes typed in, or a note (e.g. "topped up")."""

    order_line = models.ForeignKey(OrderLine, on_delete=models.PROTECT, related_name="manual_deliveries")
    content_encrypted = models.TextField(blank=True)
    note = models.CharField(max_length=255, blank=True)
    staff = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"manual delivery for line #{self.order_line_id}"
