"""The code vault: encrypted card codes, import batches, reservations, assignments and reveals."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from catalog.models import MONEY, Variant


class ImportBatch(models.Model):
    """One import of codes for one variant, with the unit cost every code in it was bought at."""

    class Source(models.TextChoices):
        PASTE = "paste", _("Pasted")
        TXT = "txt", _("TXT file")
        CSV = "csv", _("CSV file")
        XLSX = "xlsx", _("XLSX file")
        UPSTREAM = "upstream", _("Upstream purchase")
        MANUAL = "manual", _("Manual fulfilment")

    variant = models.ForeignKey(Variant, on_delete=models.PROTECT, related_name="batches", verbose_name=_("variant"))
    source = models.CharField(_("source"), max_length=16, choices=Source.choices)
    unit_cost = models.DecimalField(_("unit cost"), **MONEY)
    reusable = models.BooleanField(_("reusable codes"), default=False)
    max_uses = models.PositiveIntegerField(
        _("uses per code"), null=True, blank=True, help_text=_("For reusable codes; empty = unlimited.")
    )
    note = models.CharField(_("note"), max_length=255, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created = models.DateTimeField(_("created"), auto_now_add=True, db_index=True)
    lines_total = models.PositiveIntegerField(_("lines"), default=0)
    imported = models.PositiveIntegerField(_("imported"), default=0)
    duplicates = models.PositiveIntegerField(_("duplicates"), default=0)
    invalid = models.PositiveIntegerField(_("invalid"), default=0)

    class Meta:
        verbose_name = _("import batch")
        verbose_name_plural = _("import batches")
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"#{self.pk} {self.variant} × {self.imported}"


class Card(models.Model):
    """One code. The plaintext never touches the database: ``code_encrypted`` is AES-256-GCM with
    AAD ``<card id>|<variant id>``, and ``digest`` (HMAC with a separate pepper) deduplicates."""

    class Status(models.TextChoices):
        AVAILABLE = "available", _("Available")
        RESERVED = "reserved", _("Reserved")
        SOLD = "sold", _("Sold")
        VOID = "void", _("Void")

    variant = models.ForeignKey(Variant, on_delete=models.PROTECT, related_name="cards")
    batch = models.ForeignKey(ImportBatch, on_delete=models.PROTECT, related_name="cards")
    code_encrypted = models.TextField()
    secret_encrypted = models.TextField(blank=True)
    key_version = models.CharField(max_length=16)
    digest = models.CharField(max_length=64, unique=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.AVAILABLE)
    reserved_until = models.DateTimeField(null=True, blank=True)
    reserved_for = models.ForeignKey(
        "orders.OrderLine", null=True, blank=True, on_delete=models.SET_NULL, related_name="reserved_cards"
    )
    reusable = models.BooleanField(default=False)
    max_uses = models.PositiveIntegerField(null=True, blank=True)  # reusable only; None = unlimited
    use_count = models.PositiveIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)
    sold_at = models.DateTimeField(null=True, blank=True)
    # When stock moved (reserved, released, sold, voided): the branch change feed reads it.
    status_changed_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        verbose_name = _("code")
        verbose_name_plural = _("codes")
        indexes = [
            # Allocation scans available codes of a variant in id order; stock counts use it too.
            models.Index(fields=["variant", "id"], condition=Q(status="available"), name="card_available"),
            models.Index(fields=["reserved_until"], condition=Q(status="reserved"), name="card_reserved_until"),
            models.Index(fields=["batch", "status"], name="card_batch_status"),
        ]
        constraints = [
            models.CheckConstraint(
                name="card_uses_within_limit",
                condition=Q(max_uses__isnull=True) | Q(use_count__lte=models.F("max_uses")),
            ),
            models.CheckConstraint(
                name="card_reserved_has_deadline",
                condition=~Q(status="reserved") | Q(reserved_until__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"Code #{self.pk} ({self.get_status_display()})"


class CardAssignment(models.Model):
    """A code delivered on an order line. A single-use code can be assigned once, ever."""

    card = models.ForeignKey(Card, on_delete=models.PROTECT, related_name="assignments")
    order_line = models.ForeignKey("orders.OrderLine", on_delete=models.PROTECT, related_name="assignments")
    reusable = models.BooleanField(default=False)
    unit_cost = models.DecimalField(**MONEY)
    created = models.DateTimeField(auto_now_add=True)
    # Set when the order was refunded after this code was delivered: the customer still has the code
    # (it never goes back to stock), and staff see that in the order and the vault.
    refunded_at = models.DateTimeField(_("refunded after delivery"), null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["card"], condition=Q(reusable=False), name="single_use_card_once"),
            models.UniqueConstraint(fields=["card", "order_line"], name="card_once_per_line"),
        ]

    def __str__(self) -> str:
        return f"code #{self.card_id} → line #{self.order_line_id}"


class CardReveal(models.Model):
    """Every time a plaintext code is shown or sent: who, when, where, how."""

    class Channel(models.TextChoices):
        ORDER_PAGE = "order_page", _("Order page")
        TXT_DOWNLOAD = "txt", _("TXT download")
        EMAIL = "email", _("E-mail")
        ADMIN = "admin", _("Admin")
        EXPORT = "export", _("Export")
        API = "api", _("API")

    card = models.ForeignKey(Card, on_delete=models.CASCADE, related_name="reveals")
    channel = models.CharField(max_length=16, choices=Channel.choices)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    order_number = models.CharField(max_length=32, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=255, blank=True)
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("code reveal")
        verbose_name_plural = _("code reveals")
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"code #{self.card_id} via {self.channel}"
