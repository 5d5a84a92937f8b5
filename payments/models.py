"""Payment attempts and inbound callbacks, shared by every provider."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from catalog.models import MONEY
from ledger.models import Account


class PaymentAttempt(models.Model):
    class Status(models.TextChoices):
        CREATED = "created", _("Created")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")

    class Purpose(models.TextChoices):
        ORDER = "order", _("Order")
        BRANCH_TOP_UP = "branch_top_up", _("Branch balance top-up")
        WALLET_TOP_UP = "wallet_top_up", _("Customer wallet top-up")  # subject_id: the customer (user) id
        # Site A collecting a branch's sale (platform-collect mode); subject_id: a BranchSale on Site A.
        BRANCH_SALE = "branch_sale", _("Branch sale collected by Site A")

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
    # A second gateway reference where the gateway reports payments under another id than the one we
    # were given at start (Stripe: the PaymentIntent id, which its balance transactions carry).
    gateway_reference = models.CharField(max_length=128, blank=True, db_index=True)

    # The channel's fee on this payment, fixed when it starts. A customer-paid fee (surcharge) is
    # included in ``amount``; a fee the shop absorbs is not.
    fee = models.DecimalField(**MONEY, default=Decimal("0.00"))
    fee_payer = models.CharField(max_length=12, blank=True)
    # Where the gateway sends the customer back to (empty: the provider's default page).
    return_url = models.URLField(max_length=500, blank=True)
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

    @property
    def surcharge(self) -> Decimal:
        """The part of ``amount`` that is the customer-paid channel fee."""
        return self.fee if self.fee_payer == PaymentChannel.FeePayer.CUSTOMER else Decimal("0.00")

    @property
    def goods_amount(self) -> Decimal:
        """What is being paid for (the order total, the top-up), without the surcharge."""
        return self.amount - self.surcharge


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
        indexes = [
            # Stripe's event-id dedupe looks up ``payload -> 'event_id'``; without this it scans the log.
            models.Index(
                models.F("payload__event_id"),
                condition=models.Q(provider="stripe", accepted=True),
                name="payment_callback_stripe_event",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider} callback ({'accepted' if self.accepted else self.error_code})"


class PaymentChannel(models.Model):
    """A shop's configuration of one provider: non-secret settings in ``config``, the secret encrypted.

    One row per provider per schema. The secret is read and written only through
    ``payments.channels`` and is never shown back in the admin.
    """

    class FeePayer(models.TextChoices):
        SHOP = "shop", _("The shop absorbs it")
        CUSTOMER = "customer", _("The customer pays it (surcharge)")

    provider = models.CharField(_("provider"), max_length=32, unique=True)
    name = models.CharField(_("display name"), max_length=80)
    is_enabled = models.BooleanField(_("enabled"), default=True)
    sort_order = models.PositiveSmallIntegerField(_("sort order"), default=0)
    fee_percent = models.DecimalField(
        _("fee, %"), max_digits=5, decimal_places=2, default=Decimal("0.00"), validators=[MinValueValidator(0)]
    )
    fee_fixed = models.DecimalField(_("fixed fee"), **MONEY, default=Decimal("0.00"), validators=[MinValueValidator(0)])
    fee_payer = models.CharField(_("fee paid by"), max_length=12, choices=FeePayer.choices, default=FeePayer.SHOP)
    min_amount = models.DecimalField(
        _("minimum amount"), **MONEY, null=True, blank=True, validators=[MinValueValidator(0)]
    )
    max_amount = models.DecimalField(
        _("maximum amount"), **MONEY, null=True, blank=True, validators=[MinValueValidator(0)]
    )
    currencies = models.CharField(
        _("currencies"),
        max_length=200,
        blank=True,
        help_text=_("ISO codes separated by commas, e.g. USD, CNY. Empty: every currency."),
    )
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

    @property
    def currency_list(self) -> list[str]:
        return [code.strip().upper() for code in self.currencies.split(",") if code.strip()]

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        errors = {}
        if self.min_amount is not None and self.max_amount is not None and self.min_amount > self.max_amount:
            errors["max_amount"] = _("The maximum must not be below the minimum.")
        bad = [code for code in self.currency_list if len(code) != 3 or not code.isalpha() or not code.isascii()]
        if bad:
            errors["currencies"] = _("Not a three-letter currency code: %(codes)s.") % {"codes": ", ".join(bad)}
        if errors:
            raise ValidationError(errors)
        self.currencies = ", ".join(dict.fromkeys(self.currency_list))


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


class CustomerWalletManager(models.Manager):
    def get_queryset(self):
        return super().get_queryset().filter(owner_type="user", code__startswith="wallet:")


class CustomerWallet(Account):
    """The ledger accounts that are customer wallets, for the staff's wallet pages (no table of its own)."""

    objects = CustomerWalletManager()

    class Meta:
        proxy = True
        verbose_name = _("customer wallet")
        verbose_name_plural = _("customer wallets")
        ordering = ["-updated"]


class ReconciliationRun(models.Model):
    """One comparison of a channel's day (shop time) with the gateway's records; one row per channel
    and day. Re-running replaces its items; a failed re-run keeps the last successful comparison."""

    class Source(models.TextChoices):
        STRIPE_API = "stripe_api", _("Stripe balance transactions")
        EPAY_QUERY = "epay_query", _("epay order queries")
        CSV = "csv", _("Uploaded CSV")

    class Status(models.TextChoices):
        RUNNING = "running", _("Running")
        COMPLETED = "completed", _("Completed")
        FAILED = "failed", _("Failed")

    provider = models.CharField(_("channel"), max_length=32)
    day = models.DateField(_("day"))
    source = models.CharField(_("source"), max_length=16, choices=Source.choices)
    status = models.CharField(_("status"), max_length=12, choices=Status.choices, default=Status.RUNNING)
    error_code = models.CharField(_("error code"), max_length=64, blank=True)
    error_message = models.CharField(_("error"), max_length=255, blank=True)
    file_name = models.CharField(_("file"), max_length=200, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    ours_count = models.PositiveIntegerField(_("our payments"), default=0)
    ours_total = models.DecimalField(_("our total"), **MONEY, default=0)
    theirs_count = models.PositiveIntegerField(_("gateway payments"), default=0)
    theirs_total = models.DecimalField(_("gateway total"), **MONEY, default=0)
    matched_count = models.PositiveIntegerField(_("matched"), default=0)
    mismatch_count = models.PositiveIntegerField(_("mismatches"), default=0)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    compared_at = models.DateTimeField(_("last successful comparison"), null=True, blank=True)

    class Meta:
        verbose_name = _("reconciliation run")
        verbose_name_plural = _("reconciliation")
        ordering = ["-day", "provider"]
        constraints = [models.UniqueConstraint(fields=["provider", "day"], name="reconciliation_run_once_per_day")]

    def __str__(self) -> str:
        return f"{self.provider} {self.day} ({self.status})"


class ReconciliationItem(models.Model):
    """One mismatch between our payment records and the gateway's, for staff to look into."""

    class Kind(models.TextChoices):
        MISSING_AT_GATEWAY = "missing_at_gateway", _("Missing at the gateway")
        MISSING_OURS = "missing_ours", _("Missing in our records")
        AMOUNT = "amount_mismatch", _("Amount differs")
        CURRENCY = "currency_mismatch", _("Currency differs")
        GATEWAY_PAID_OURS_NOT = "gateway_paid_ours_not", _("Paid at the gateway, not in our records")
        OURS_PAID_GATEWAY_NOT = "ours_paid_gateway_not", _("Paid in our records, not at the gateway")

    run = models.ForeignKey(ReconciliationRun, on_delete=models.CASCADE, related_name="items")
    kind = models.CharField(_("kind"), max_length=24, choices=Kind.choices)
    reference = models.CharField(_("reference"), max_length=128)  # the gateway's trade number, else our token
    attempt = models.ForeignKey(
        PaymentAttempt, null=True, blank=True, on_delete=models.SET_NULL, related_name="reconciliation_items"
    )
    ours_amount = models.DecimalField(**MONEY, null=True, blank=True)
    ours_currency = models.CharField(max_length=3, blank=True)
    ours_status = models.CharField(max_length=12, blank=True)
    theirs_amount = models.DecimalField(**MONEY, null=True, blank=True)
    theirs_currency = models.CharField(max_length=3, blank=True)
    theirs_status = models.CharField(max_length=32, blank=True)
    occurred_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(_("resolved"), null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolution_note = models.TextField(_("note"), blank=True)

    class Meta:
        verbose_name = _("reconciliation mismatch")
        verbose_name_plural = _("reconciliation mismatches")
        ordering = ["kind", "reference"]
        constraints = [
            models.UniqueConstraint(fields=["run", "kind", "reference"], name="reconciliation_item_once"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.reference}"


class Refund(models.Model):
    """Money given back on an order, whole or in part (``payments.refunds``).

    A refund to a gateway is recorded ``pending`` before the gateway is called and settled afterwards,
    so the sum of pending and succeeded refunds of an order never exceeds what was paid.
    """

    class Destination(models.TextChoices):
        CHANNEL = "channel", _("Original payment channel")
        WALLET = "wallet", _("Customer's wallet")
        OUTSIDE = "outside", _("Refunded outside the system (e.g. in the gateway's dashboard)")

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")

    order = models.ForeignKey("orders.Order", on_delete=models.PROTECT, related_name="refunds")
    amount = models.DecimalField(_("amount"), **MONEY)
    currency = models.CharField(_("currency"), max_length=3)
    destination = models.CharField(_("destination"), max_length=12, choices=Destination.choices)
    provider = models.CharField(_("payment method"), max_length=32, blank=True)
    status = models.CharField(_("status"), max_length=12, choices=Status.choices, default=Status.PENDING)
    # Sent to the gateway as the idempotency key: a retried submission never refunds twice.
    token = models.CharField(max_length=64, unique=True)
    gateway_refund_id = models.CharField(_("gateway refund id"), max_length=128, blank=True)
    gateway_status = models.CharField(_("gateway status"), max_length=32, blank=True)
    error = models.CharField(_("error"), max_length=255, blank=True)
    staff = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(_("reason"), max_length=255)
    created = models.DateTimeField(_("created"), auto_now_add=True, db_index=True)
    completed_at = models.DateTimeField(_("completed"), null=True, blank=True)
    customer_notified_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("refund")
        verbose_name_plural = _("refunds")
        ordering = ["-created"]
        constraints = [models.CheckConstraint(name="refund_amount_positive", condition=models.Q(amount__gt=0))]

    def __str__(self) -> str:
        return f"{self.amount} {self.currency} → {self.get_destination_display()} ({self.status})"


class ConfiguredGateway(PaymentChannel):
    """A payment channel whose provider is a configurable HTTP gateway (``gw-<slug>``): the same row,
    edited in the admin through a form of its recipe instead of raw settings."""

    class Meta:
        proxy = True
        verbose_name = _("configurable gateway")
        verbose_name_plural = _("configurable gateways")
