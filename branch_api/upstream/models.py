"""A branch's side of the branch network (tenant schemas only)."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from catalog.models import MONEY


class UpstreamConnection(models.Model):
    """The branch's connection to Site A (one row). Credentials are stored encrypted."""

    base_url = models.URLField(_("Site A URL"), help_text=_("e.g. https://cardmesh.example.com"))
    host_header = models.CharField(
        _("Host header"),
        max_length=253,
        blank=True,
        help_text=_("Only when Site A is reached on an internal address: the platform domain to send as Host."),
    )
    api_key_encrypted = models.TextField()
    signing_secret_encrypted = models.TextField()
    is_enabled = models.BooleanField(_("enabled"), default=True)
    protocol_version = models.CharField(max_length=8, blank=True)
    clock_skew_seconds = models.FloatField(null=True, blank=True)
    last_ping_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=255, blank=True)
    last_sync_at = models.DateTimeField(null=True, blank=True)
    sync_cursor = models.CharField(max_length=64, blank=True)
    balance = models.DecimalField(**MONEY, null=True, blank=True)
    balance_checked_at = models.DateTimeField(null=True, blank=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("Site A connection")
        verbose_name_plural = _("Site A connection")

    def __str__(self) -> str:
        return self.base_url
