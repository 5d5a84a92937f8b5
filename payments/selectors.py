"""What a customer may pay with in the current shop."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.utils.translation import gettext_lazy as _

from payments.fees import SANDBOX, channel_applies, channel_fee_note
from payments.models import PaymentChannel
from payments.providers import provider_code_known


def checkout_channels(
    *,
    user=None,
    amount: Decimal | None = None,
    amount_up_to: Decimal | None = None,
    currency: str | None = None,
    for_order: bool = True,
) -> list[tuple[str, str]]:
    """(provider code, label) of the channels offered at checkout, in the shop's order: the offline
    sandbox when enabled for this deployment, then every enabled, configured channel that takes
    ``amount`` (or, with ``amount_up_to``, some amount between the two) in ``currency`` (the shop's by
    default). A customer-paid fee is named in the label.

    A branch in platform-collect mode offers Site A's channels for orders (``for_order``).
    With a logged-in ``user`` whose wallet is funded (and covers ``amount``, when given), the wallet
    balance comes last."""
    from django_tenants.utils import schema_context

    from branch_api.provider.collect import collect_mode_active
    from ledger.services import shop_currency

    currency = currency or shop_currency()
    limits = {"amount": amount, "amount_up_to": amount_up_to, "currency": currency}
    if for_order and collect_mode_active():
        with schema_context(settings.PUBLIC_SCHEMA_NAME):
            channels = _shop_channels(**limits)
    else:
        channels = _shop_channels(**limits)
    if user is not None and user.is_authenticated:
        from payments.wallet import PROVIDER_CODE, wallet_balance

        available = wallet_balance(user)
        if available > 0 and (amount is None or available >= amount):
            label = str(_("Wallet balance (%(available)s available)")) % {"available": available}
            channels.append((PROVIDER_CODE, label))
    return channels


def _shop_channels(*, amount, amount_up_to, currency) -> list[tuple[str, str]]:
    """The current schema's channels that apply (one query)."""
    rows = list(PaymentChannel.objects.order_by("sort_order", "pk"))
    sandbox_row = next((row for row in rows if row.provider == SANDBOX), None)
    offered: list[tuple[PaymentChannel | None, str, str]] = []
    if settings.PAYMENTS_SANDBOX_ENABLED and (sandbox_row is None or sandbox_row.is_enabled):
        offered.append((sandbox_row, SANDBOX, sandbox_row.name if sandbox_row else str(_("Sandbox (test payment)"))))
    for row in rows:
        if row.is_enabled and provider_code_known(row.provider) and row.provider != SANDBOX:
            offered.append((row, row.provider, row.name))
    channels = []
    for row, code, label in offered:
        if not channel_applies(row, amount=amount, currency=currency, amount_up_to=amount_up_to):
            continue
        note = channel_fee_note(row)
        channels.append((code, f"{label} ({note})" if note else label))
    return channels
