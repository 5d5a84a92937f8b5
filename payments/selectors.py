"""What a customer may pay with in the current shop."""

from __future__ import annotations

from django.conf import settings
from django.utils.translation import gettext_lazy as _

from payments.models import PaymentChannel
from payments.providers import PROVIDERS


def checkout_channels() -> list[tuple[str, str]]:
    """(provider code, label) of the channels offered at checkout, in the shop's order: the offline
    sandbox when enabled for this deployment, then every enabled, configured channel."""
    channels: list[tuple[str, str]] = []
    if settings.PAYMENTS_SANDBOX_ENABLED:
        channels.append(("sandbox", str(_("Sandbox (test payment)"))))
    for channel in PaymentChannel.objects.filter(is_enabled=True).order_by("sort_order", "pk"):
        if channel.provider in PROVIDERS and channel.provider != "sandbox":
            channels.append((channel.provider, channel.name))
    return channels
