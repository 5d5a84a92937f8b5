"""A branch's side of the branch network (tenant schemas only)."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from catalog.models import MONEY


class UpstreamConnection(models.Model):
    """The branch's connection to Site A (one row). Credentials are stored encrypted."""

    class Status(models.TextChoices):
        UNKNOWN = "unknown", _("Not checked yet")
        OK = "ok", _("Connected")
        ERROR = "error", _("Failing")

    base_url = models.URLField(_("Site A URL"), help_text=_("e.g. https://cardmesh.example.com"))
    host_header = models.CharField(
        _("Host header"),
        max_length=253,
        blank=True,
        help_text=_("Only when Site A is reached on an internal address: the platform domain to send as Host."),
    )
    api_key_encrypted = models.TextField()
    signing_secret_encrypted = models.TextField()
    # The whsec_ secret of Site A's webhook endpoint pointing at this branch (see webhook.py).
    webhook_secret_encrypted = models.TextField(blank=True)
    is_enabled = models.BooleanField(_("enabled"), default=True)
    status = models.CharField(_("status"), max_length=12, choices=Status.choices, default=Status.UNKNOWN)
    protocol_version = models.CharField(_("protocol"), max_length=8, blank=True)
    clock_skew_seconds = models.FloatField(_("clock skew (s)"), null=True, blank=True)
    last_ping_at = models.DateTimeField(_("last checked"), null=True, blank=True)
    last_error = models.CharField(_("last error"), max_length=255, blank=True)
    last_error_at = models.DateTimeField(_("last error at"), null=True, blank=True)
    last_sync_at = models.DateTimeField(_("last sync"), null=True, blank=True)
    last_full_sync_at = models.DateTimeField(_("last full sync"), null=True, blank=True)
    last_sync_result = models.CharField(_("last sync result"), max_length=255, blank=True)
    sync_cursor = models.CharField(max_length=64, blank=True)
    # Set when the selection changed: an incremental pull cannot find unchanged products of a newly
    # selected category, so the next sync is a full one.
    full_sync_requested_at = models.DateTimeField(null=True, blank=True)
    balance = models.DecimalField(_("balance at Site A"), **MONEY, null=True, blank=True)
    balance_currency = models.CharField(max_length=3, blank=True)
    balance_checked_at = models.DateTimeField(null=True, blank=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("Site A connection")
        verbose_name_plural = _("Site A connection")

    def __str__(self) -> str:
        return self.base_url


class UpstreamCategory(models.Model):
    """A node of Site A's category tree as last seen, and the local category mirroring it (if any)."""

    remote_id = models.BigIntegerField(unique=True)
    parent_remote_id = models.BigIntegerField(null=True, blank=True)
    name = models.CharField(max_length=120)
    slug = models.CharField(max_length=140)
    icon = models.CharField(max_length=16, blank=True)
    sort_order = models.PositiveIntegerField(default=0)
    # Remote ids from the root down, "/3/17/": a selected category's subtree is one prefix test.
    path = models.CharField(max_length=255, db_index=True)
    is_visible = models.BooleanField(default=True)
    local_category = models.ForeignKey(
        "catalog.Category", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The sync hid the local mirror because it had no active products; it shows it again when it has.
    hidden_by_sync = models.BooleanField(default=False)

    class Meta:
        verbose_name = _("Site A category")
        verbose_name_plural = _("Site A categories")
        ordering = ["path"]

    def __str__(self) -> str:
        return self.name


class UpstreamSelection(models.Model):
    """What the branch sells from Site A: whole categories (with future products) or single products;
    and single products of a selected category it does not sell (excluded)."""

    class Kind(models.TextChoices):
        CATEGORY = "category", _("Whole category")
        PRODUCT = "product", _("Product")
        EXCLUDED = "excluded", _("Excluded product")

    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices)
    remote_id = models.BigIntegerField(_("Site A id"))
    name = models.CharField(_("name at Site A"), max_length=200, blank=True)
    local_category = models.ForeignKey(
        "catalog.Category",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("place copies in"),
        help_text=_("Empty: mirror Site A's category tree."),
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("selected from Site A")
        verbose_name_plural = _("selected from Site A")
        ordering = ["kind", "name"]
        constraints = [models.UniqueConstraint(fields=["kind", "remote_id"], name="upstream_selection_once")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.name or self.remote_id}"


class UpstreamPurchase(models.Model):
    """The purchase at Site A of one order line's codes.

    The request (reference, key, quantity, expected total) is fixed before the first call and sent
    unchanged on every retry, so Site A replays its first answer instead of selling twice.
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("Buying")
        BLOCKED = "blocked", _("Refused by Site A — retrying")
        DONE = "done", _("Codes received")

    order_line = models.OneToOneField("orders.OrderLine", on_delete=models.PROTECT, related_name="upstream_purchase")
    reference = models.CharField(max_length=128, unique=True)
    revision = models.PositiveIntegerField(default=0)
    remote_variant_id = models.BigIntegerField()
    quantity = models.PositiveIntegerField()
    expected_total = models.DecimalField(**MONEY)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error_code = models.CharField(max_length=48, blank=True)
    last_error = models.CharField(max_length=255, blank=True)
    alerted_at = models.DateTimeField(null=True, blank=True)
    remote_number = models.CharField(_("Site A order"), max_length=32, blank=True)
    codes_received = models.PositiveIntegerField(default=0)
    codes_reserved = models.PositiveIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("purchase from Site A")
        verbose_name_plural = _("purchases from Site A")
        ordering = ["-created"]

    def __str__(self) -> str:
        return self.reference

    @property
    def idempotency_key(self) -> str:
        # Same on every retry of the same request. A new revision (after a refusal, which Site A
        # stores under the key, or a re-priced request) gets a new key; Site A's unique reference
        # still guarantees one purchase per line whatever the key.
        return f"upstream:{self.reference}:{self.revision}"
