"""Payment attempts and inbound callbacks, shared by every provider."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from catalog.models import MONEY


class PaymentAttempt(models.Model):
    class Status(models.TextChoices):
        CREATED = "created", _("Created")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")

    class Purpose(models.TextChoices):
        ORDER = "order", _("Order")
        BRANCH_TOP_UP = "branch_top_up", _("Branch balance top-up")
        WALLET_TOP_UP = "wallet_top_up", _("Customer wallet top-up")  # subject_id: the customer (user) id

    purpose = models.CharField(max_length=16, choices=Purpose.choices, default=Purpose.ORDER)
    order = models.ForeignKey(
        "orders.Order", null=True, blank=True, on_delete=models.PROTECT, related_name="payment_attempts"
    )
    # For purposes other than an order: the id of what is being paid (e.g. a BalanceTopUp on Site A).
    subject_id = models.BigIntegerField(null=True, blank=True)
    provider = models.CharField(max_length=32)
    token = models.CharField(max_length=64, unique=True)  # our reference sent to the gateway
    amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.CREATED)
    external_id = models.CharField(max_length=128, blank=True)  # the gateway's trade number
    created = models.DateTimeField(auto_now_add=True)
    succeeded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("payment attempt")
        verbose_name_plural = _("payment attempts")
        ordering = ["-created"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "external_id"], condition=~models.Q(external_id=""), name="payment_external_once"
            ),
            models.CheckConstraint(
                name="payment_has_subject",
                condition=models.Q(purpose="order", order__isnull=False)
                | models.Q(~models.Q(purpose="order"), subject_id__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.amount} {self.currency} ({self.status})"


class PaymentCallback(models.Model):
    """Every inbound notification, accepted or not, for audit and dedupe."""

    provider = models.CharField(max_length=32)
    attempt = models.ForeignKey(PaymentAttempt, null=True, blank=True, on_delete=models.SET_NULL)
    accepted = models.BooleanField(default=False)
    error_code = models.CharField(max_length=64, blank=True)
    payload = models.JSONField(default=dict)
    remote_ip = models.GenericIPAddressField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.provider} callback ({'accepted' if self.accepted else self.error_code})"


class PaymentChannel(models.Model):
    """A shop's configuration of one provider: non-secret settings in ``config``, the secret encrypted.

    One row per provider per schema. The secret is read and written only through
    ``payments.channels`` and is never shown back in the admin.
    """

    provider = models.CharField(_("provider"), max_length=32, unique=True)
    name = models.CharField(_("display name"), max_length=80)
    is_enabled = models.BooleanField(_("enabled"), default=True)
    sort_order = models.PositiveSmallIntegerField(_("sort order"), default=0)
    # e.g. {"gateway_url": "https://pay.example.com/", "pid": "1001", "pay_type": "alipay"}
    config = models.JSONField(_("settings"), default=dict, blank=True)
    secret_encrypted = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("payment channel")
        verbose_name_plural = _("payment channels")
        ordering = ["sort_order", "pk"]

    def __str__(self) -> str:
        return self.name or self.provider


class PaymentSettings(models.Model):
    """A shop's payment settings: one row per schema (pk=1). The confirmation password is a Django
    password hash (``make_password``); it is set in the admin and never shown."""

    confirmation_password = models.CharField(_("confirmation password"), max_length=128, blank=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("payment settings")
        verbose_name_plural = _("payment settings")

    def __str__(self) -> str:
        return str(_("Payment settings"))

    def save(self, *args, **kwargs):
        self.pk = 1
        super().save(*args, **kwargs)

    @classmethod
    def load(cls) -> PaymentSettings:
        obj, _created = cls.objects.get_or_create(pk=1)
        return obj


class ManualConfirmation(models.Model):
    """Audit row of a payment confirmed by staff (补单): the gateway took the money but never called back."""

    order = models.ForeignKey("orders.Order", on_delete=models.PROTECT, related_name="manual_confirmations")
    staff = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    reason = models.TextField(_("reason"))
    gateway_reference = models.CharField(_("gateway reference"), max_length=128, blank=True)
    amount = models.DecimalField(_("amount"), **MONEY)
    currency = models.CharField(max_length=3)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("manual payment confirmation")
        verbose_name_plural = _("manual payment confirmations")
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.order_id} {self.amount} {self.currency}"


class ConfiguredGateway(PaymentChannel):
    """A payment channel whose provider is a configurable HTTP gateway (``gw-<slug>``): the same row,
    edited in the admin through a form of its recipe instead of raw settings."""

    class Meta:
        proxy = True
        verbose_name = _("configurable gateway")
        verbose_name_plural = _("configurable gateways")
