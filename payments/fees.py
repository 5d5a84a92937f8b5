"""Channel fees and limits: which channels take a payment, what they charge, and booking the fee.

A channel may charge ``fee_percent`` of the amount plus ``fee_fixed``, rounded once (ROUND_HALF_UP to
the cent). Paid by the customer, it is a surcharge added to the payment attempt (the order total
stays the goods total) and booked as fee income; absorbed by the shop, it is booked as an expense
when the payment is confirmed. Amount limits and currencies decide whether a channel applies.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.utils.translation import gettext as _

from catalog.pricing import money
from ledger.services import Line, ledger_post
from payments.errors import ChannelNotApplicable, ProviderUnavailable
from payments.models import PaymentAttempt, PaymentChannel

ZERO = Decimal("0.00")
SANDBOX = "sandbox"


def channel_fee(channel: PaymentChannel | None, amount: Decimal) -> Decimal:
    """The channel's fee on ``amount`` (0.00 without a channel)."""
    if channel is None:
        return ZERO
    return money(Decimal(amount) * channel.fee_percent / Decimal(100) + channel.fee_fixed)


def channel_applies(
    channel: PaymentChannel | None, *, amount: Decimal | None, currency: str | None, amount_up_to: Decimal | None = None
) -> bool:
    """Whether ``channel`` takes a payment of ``amount`` in ``currency``; with ``amount_up_to``,
    whether it takes any amount between the two. A missing argument is not checked."""
    if channel is None:
        return True
    if currency and channel.currency_list and currency.upper() not in channel.currency_list:
        return False
    low = amount
    high = amount_up_to if amount_up_to is not None else amount
    if low is not None and channel.max_amount is not None and low > channel.max_amount:
        return False
    if high is not None and channel.min_amount is not None and high < channel.min_amount:
        return False
    return True


def channel_fee_note(channel: PaymentChannel | None) -> str:
    """What the customer pays on top, for the checkout's channel label ("" when nothing)."""
    if channel is None or channel.fee_payer != PaymentChannel.FeePayer.CUSTOMER:
        return ""
    parts = []
    if channel.fee_percent:
        parts.append(f"{channel.fee_percent.normalize():f}%")
    if channel.fee_fixed:
        parts.append(f"{channel.fee_fixed}")
    if not parts:
        return ""
    return _("fee %(fee)s") % {"fee": " + ".join(parts)}


def payment_channel_check(*, provider_code: str, amount: Decimal, currency: str) -> PaymentChannel | None:
    """The channel row that will take this payment (None for the sandbox without a row).

    Refuses a channel the shop does not offer (``ProviderUnavailable``) or one whose limits or
    currencies exclude the payment (``ChannelNotApplicable``). The sandbox needs no row, but it must
    be enabled for the deployment (``PAYMENTS_SANDBOX_ENABLED``), whatever is being paid.
    """
    from payments.providers import provider_code_known

    if not provider_code_known(provider_code):
        raise ProviderUnavailable()
    if provider_code == SANDBOX and not settings.PAYMENTS_SANDBOX_ENABLED:
        raise ProviderUnavailable()  # whatever is being paid: a disabled sandbox would be free money
    channel = PaymentChannel.objects.filter(provider=provider_code).first()
    if channel is None:
        if provider_code != SANDBOX:
            raise ProviderUnavailable()
        return None
    if not channel.is_enabled:
        raise ProviderUnavailable()
    if not channel_applies(channel, amount=amount, currency=currency):
        raise ChannelNotApplicable(_channel_limits_message(channel), field="payment")
    return channel


def _channel_limits_message(channel: PaymentChannel) -> str:
    limits = []
    if channel.min_amount is not None:
        limits.append(_("from %(amount)s") % {"amount": channel.min_amount})
    if channel.max_amount is not None:
        limits.append(_("up to %(amount)s") % {"amount": channel.max_amount})
    if channel.currency_list:
        limits.append(_("in %(currencies)s") % {"currencies": ", ".join(channel.currency_list)})
    return _("%(channel)s takes payments %(limits)s only.") % {"channel": channel.name, "limits": " ".join(limits)}


def attempt_fee_fields(channel: PaymentChannel | None, *, amount: Decimal) -> dict:
    """The fee fields of a new attempt for ``amount`` (goods total): fee, payer and charged amount."""
    fee = channel_fee(channel, amount)
    payer = channel.fee_payer if channel is not None and fee else ""
    charged = amount + fee if payer == PaymentChannel.FeePayer.CUSTOMER else amount
    return {"fee": fee, "fee_payer": payer, "amount": charged}


def payment_fee_book(*, attempt: PaymentAttempt) -> None:
    """Book the channel fee of a confirmed payment once (idempotent per attempt).

    Surcharge: the clearing account received it on top of the goods, and it is the shop's fee
    income. Absorbed: the gateway keeps it out of what it pays the shop, an expense.
    """
    if not attempt.fee:
        return
    if attempt.fee_payer == PaymentChannel.FeePayer.CUSTOMER:
        lines = [Line("payment_clearing", attempt.fee), Line("payment_fee_income", -attempt.fee)]
    else:
        lines = [Line("payment_fees", attempt.fee), Line("payment_clearing", -attempt.fee)]
    ledger_post(
        kind="payment_fee",
        idempotency_key=f"payment-fee:{attempt.pk}",
        reference=attempt.token[:64],
        memo=f"{attempt.provider} fee ({attempt.fee_payer})",
        lines=lines,
    )
