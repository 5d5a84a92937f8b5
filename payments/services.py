"""Starting payments and processing provider callbacks (the same path for every provider)."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.http import storable_text
from orders.errors import OrderNotPayable, OrderStateError
from orders.models import Order
from orders.services import order_mark_paid
from payments.duplicates import duplicate_payment_book
from payments.errors import CallbackRejected
from payments.fees import attempt_fee_fields, payment_channel_check, payment_fee_book
from payments.models import PaymentAttempt, PaymentCallback, PaymentChannel
from payments.providers import CallbackData, get_provider


def payment_start(*, order: Order, provider_code: str, request=None) -> tuple[PaymentAttempt, str]:
    """Open a payment attempt for an unpaid order; returns it and the URL to send the customer to.

    The channel must be offered and apply to the order's total and currency; its surcharge, if the
    customer pays the fee, is added to the attempt (the order total stays the goods total). A branch
    in platform-collect mode opens the attempt at Site A instead (``branch_api.provider.collect``).
    """
    if order.status != Order.Status.PENDING_PAYMENT or order.expires_at <= timezone.now():
        raise OrderNotPayable()
    from branch_api.provider.collect import collect_mode_active, collect_payment_start

    if collect_mode_active():
        return collect_payment_start(order=order, provider_code=provider_code, request=request)
    return _attempt_open(
        provider_code=provider_code,
        request=request,
        fields={"order": order, "amount": order.total, "currency": order.currency},
    )


def payment_check(*, order: Order, provider_code: str) -> None:
    """Refuse a channel that is not offered for this order or does not take its total and currency
    (Site A's channels for a branch in platform-collect mode). Raises ``ProviderUnavailable`` or
    ``ChannelNotApplicable``."""
    from django_tenants.utils import schema_context

    from branch_api.provider.collect import collect_mode_active

    check = {"provider_code": provider_code, "amount": order.total, "currency": order.currency}
    if collect_mode_active():
        with schema_context(settings.PUBLIC_SCHEMA_NAME):
            payment_channel_check(**check)
    else:
        payment_channel_check(**check)


def payment_start_for(
    *,
    purpose: str,
    subject_id: int,
    amount,
    currency: str,
    provider_code: str,
    request=None,
    return_url: str = "",
) -> tuple[PaymentAttempt, str]:
    """Open a payment attempt for something other than an order (e.g. a branch balance top-up)."""
    return _attempt_open(
        provider_code=provider_code,
        request=request,
        fields={
            "purpose": purpose,
            "subject_id": subject_id,
            "amount": amount,
            "currency": currency,
            "return_url": return_url,
        },
    )


def _attempt_open(*, provider_code: str, request, fields: dict) -> tuple[PaymentAttempt, str]:
    """Record the attempt, then ask the provider where to pay. The provider may call its gateway
    (Stripe creates a Checkout Session), so that happens outside any transaction of ours; if it fails,
    the attempt is marked failed and the error goes up."""
    provider = get_provider(provider_code)
    channel = payment_channel_check(provider_code=provider_code, amount=fields["amount"], currency=fields["currency"])
    fields = {**fields, **attempt_fee_fields(channel, amount=fields["amount"])}
    attempt = PaymentAttempt.objects.create(provider=provider_code, token=secrets.token_urlsafe(24), **fields)
    try:
        return attempt, provider.start_url(attempt=attempt, request=request)
    except Exception:
        PaymentAttempt.objects.filter(pk=attempt.pk).update(status=PaymentAttempt.Status.FAILED)
        raise


def payment_callback_handle(*, provider_code: str, data: dict, remote_ip: str | None = None) -> tuple[bool, str]:
    """Verify and apply one notification. Returns (accepted, reason code). Never raises for bad input.

    Trusted only when signature, merchant, attempt, amount, currency and status all match; a repeated
    notification for an already-applied payment is accepted (the gateway must stop retrying) and
    changes nothing.
    """
    provider = get_provider(provider_code)
    safe_payload = {
        storable_text(k): storable_text(str(v)[:200]) for k, v in data.items() if k not in {"key", "secret"}
    }
    if any("\x00" in f"{k}{v}" for k, v in data.items()):
        # No gateway sends one, and no text column could hold it.
        _log(provider_code, None, False, "invalid_payload", safe_payload, remote_ip)
        return False, "invalid_payload"
    try:
        parsed = provider.parse_callback(data)
        if isinstance(parsed, tuple):  # refund notices (Stripe's refund events)
            from payments.refunds import refund_gateway_notice_apply

            attempt = None
            for notice in parsed:
                attempt = refund_gateway_notice_apply(provider_code=provider_code, notice=notice)
            _log(provider_code, attempt, True, "", safe_payload, remote_ip)
            return True, "ok"
        attempt = _verify(provider, parsed)
        if not parsed.succeeded:
            PaymentAttempt.objects.filter(pk=attempt.pk, status=PaymentAttempt.Status.CREATED).update(
                status=PaymentAttempt.Status.FAILED
            )
            _log(provider_code, attempt, True, "payment_failed", safe_payload, remote_ip)
            return True, "payment_failed"
        _apply_success(attempt, parsed)
    except CallbackRejected as exc:
        _log(provider_code, None, False, exc.code, safe_payload, remote_ip)
        return False, exc.code
    except OrderStateError as exc:
        _log(provider_code, None, False, exc.code, safe_payload, remote_ip)
        return False, exc.code
    _log(provider_code, attempt, True, "", safe_payload, remote_ip)
    return True, "ok"


def _verify(provider, parsed: CallbackData) -> PaymentAttempt:
    if parsed.merchant != provider.expected_merchant():
        raise CallbackRejected("wrong merchant", code="wrong_merchant")
    attempt = PaymentAttempt.objects.filter(token=parsed.token, provider=provider.code).first()
    if attempt is None:
        raise CallbackRejected("unknown payment", code="unknown_payment")
    if parsed.amount != attempt.amount:
        raise CallbackRejected("amount does not match", code="amount_mismatch")
    if parsed.currency != attempt.currency:
        raise CallbackRejected("currency does not match", code="currency_mismatch")
    return attempt


@transaction.atomic
def _apply_success(attempt: PaymentAttempt, parsed: CallbackData) -> None:
    attempt = PaymentAttempt.objects.select_for_update().get(pk=attempt.pk)
    if attempt.status == PaymentAttempt.Status.SUCCEEDED:
        return  # a retried notification: already applied
    attempt.status = PaymentAttempt.Status.SUCCEEDED
    attempt.external_id = parsed.external_id
    attempt.succeeded_at = timezone.now()
    attempt.gateway_reference = parsed.reference
    try:
        with transaction.atomic():
            attempt.save(update_fields=["status", "external_id", "succeeded_at", "gateway_reference"])
    except IntegrityError:
        raise CallbackRejected("trade number already used", code="duplicate_trade_no") from None
    if attempt.purpose == PaymentAttempt.Purpose.ORDER:
        order = Order.objects.select_for_update().get(pk=attempt.order_id)
        if order.paid_at is not None:
            # Another payment paid this order first: this one is the customer's money, owed back whole
            # (a customer-paid surcharge included, so it is not fee income; an absorbed fee the gateway
            # keeps all the same).
            if attempt.fee_payer != PaymentChannel.FeePayer.CUSTOMER:
                payment_fee_book(attempt=attempt)
            duplicate_payment_book(attempt=attempt, order=order)
            return
    payment_fee_book(attempt=attempt)
    # What was paid for: the surcharge (a customer-paid channel fee) is not part of the order or top-up.
    paid = parsed.amount - attempt.surcharge
    if attempt.purpose == PaymentAttempt.Purpose.BRANCH_TOP_UP:
        from branch_api.provider.services import top_up_mark_paid

        top_up_mark_paid(
            top_up_id=attempt.subject_id,
            amount=paid,
            currency=parsed.currency,
            payment_reference=f"{attempt.provider}:{parsed.external_id}",
        )
        return
    if attempt.purpose == PaymentAttempt.Purpose.WALLET_TOP_UP:
        from payments.wallet import wallet_top_up_apply

        wallet_top_up_apply(
            attempt=attempt,
            amount=paid,
            currency=parsed.currency,
            payment_reference=f"{attempt.provider}:{parsed.external_id}",
        )
        return
    if attempt.purpose == PaymentAttempt.Purpose.BRANCH_SALE:
        from branch_api.provider.collect import branch_sale_collect

        branch_sale_collect(attempt=attempt, amount=paid, currency=parsed.currency)
        return
    order_mark_paid(
        order_id=attempt.order_id,
        amount=paid,
        currency=parsed.currency,
        provider=attempt.provider,
        payment_reference=parsed.external_id,
    )


def _log(provider: str, attempt, accepted: bool, code: str, payload: dict, ip: str | None) -> None:
    PaymentCallback.objects.create(
        provider=provider, attempt=attempt, accepted=accepted, error_code=code, payload=payload, remote_ip=ip
    )
