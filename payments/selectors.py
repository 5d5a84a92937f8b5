"""What a customer may pay with in the current shop."""

from __future__ import annotations

from django.conf import settings
from django.utils.translation import gettext_lazy as _

from payments.models import PaymentChannel
from payments.providers import provider_code_known


def checkout_channels(*, user=None, amount=None) -> list[tuple[str, str]]:
    """(provider code, label) of the channels offered at checkout, in the shop's order: the offline
    sandbox when enabled for this deployment, then every enabled, configured channel.

    With a logged-in ``user`` whose wallet is funded (and covers ``amount``, when given), the wallet
    balance comes last."""
    channels: list[tuple[str, str]] = []
    if settings.PAYMENTS_SANDBOX_ENABLED:
        channels.append(("sandbox", str(_("Sandbox (test payment)"))))
    for channel in PaymentChannel.objects.filter(is_enabled=True).order_by("sort_order", "pk"):
        if provider_code_known(channel.provider) and channel.provider != "sandbox":
            channels.append((channel.provider, channel.name))
    if user is not None and user.is_authenticated:
        from payments.wallet import PROVIDER_CODE, wallet_balance

        available = wallet_balance(user)
        if available > 0 and (amount is None or available >= amount):
            label = str(_("Wallet balance (%(available)s available)")) % {"available": available}
            channels.append((PROVIDER_CODE, label))
    return channels
