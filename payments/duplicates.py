"""Second payments of an order: a customer who pays the same order twice (two tabs, two channels, a
slow notification and a retry) is owed the second payment back.

It is booked when it arrives, so the books match what the gateway holds: payment clearing →
``customer_payments_owed`` (a liability), and a history entry on the order. A task then refunds it
through the channel where the provider has a refund API (Stripe, the sandbox; one idempotency key
per attempt, so a retried task never refunds twice); otherwise staff refund it in the gateway's
dashboard and record that in the admin (Payments → Payment attempts → action). Either way the
refund books ``customer_payments_owed`` → payment clearing once.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from django.db import transaction
from django.db.models import CharField, Exists, OuterRef, QuerySet, Value
from django.db.models.functions import Cast, Concat

from ledger.models import Account, Transaction
from ledger.services import Line, account_get_or_create, ledger_post
from payments.manual import PROVIDER as MANUAL_PROVIDER
from payments.models import PaymentAttempt

logger = logging.getLogger(__name__)

OWED_ACCOUNT = "customer_payments_owed"


def _book_key(attempt_id: int) -> str:
    return f"duplicate-payment:{attempt_id}"


def _refund_key(attempt_id: int) -> str:
    return f"duplicate-payment-refund:{attempt_id}"


def duplicate_payment_book(*, attempt: PaymentAttempt, order) -> None:
    """Book ``attempt``, a confirmed payment of ``order`` that another payment already paid, as owed
    back to the customer (inside the callback's transaction, order row locked), and queue its refund
    for after the commit."""
    from orders.models import OrderEvent
    from payments.tasks import duplicate_payment_refund_task

    account_get_or_create(
        OWED_ACCOUNT,
        name="Second payments of orders, owed to customers",
        kind=Account.Kind.LIABILITY,
        may_go_negative=False,
    )
    ledger_post(
        kind="duplicate_payment",
        idempotency_key=_book_key(attempt.pk),
        reference=order.number,
        memo=f"second payment of {order.number} via {attempt.provider} {attempt.external_id}, owed back"[:255],
        lines=[Line("payment_clearing", attempt.amount), Line(OWED_ACCOUNT, -attempt.amount)],
    )
    manual = order.payment_provider == MANUAL_PROVIDER
    OrderEvent.objects.create(
        order=order,
        from_status=order.status,
        to_status=order.status,
        message=(
            f"second payment of {attempt.amount} {attempt.currency} via {attempt.provider} "
            f"({attempt.external_id}): owed back to the customer"
            + (" unless it is the payment confirmed by hand (Payment attempts)" if manual else "")
        )[:255],
    )
    if manual:
        # Staff confirmed this order by hand: this may be the very payment they confirmed. They decide
        # (refund it, or record that it was the confirmed one); nothing is refunded by itself.
        return
    attempt_id = attempt.pk
    transaction.on_commit(lambda: duplicate_payment_refund_task.delay(attempt_id))


def duplicate_payments_open(attempts) -> list[PaymentAttempt]:
    """Those of ``attempts`` booked as second payments and not refunded yet."""
    attempts = list(attempts)
    keys = set(
        Transaction.objects.filter(
            idempotency_key__in=[key(a.pk) for a in attempts for key in (_book_key, _refund_key)]
        ).values_list("idempotency_key", flat=True)
    )
    return [a for a in attempts if _book_key(a.pk) in keys and _refund_key(a.pk) not in keys]


def duplicate_payment_is(attempt: PaymentAttempt) -> bool:
    """Whether ``attempt`` was booked as a second payment (owed back, or given back already)."""
    return Transaction.objects.filter(idempotency_key=_book_key(attempt.pk)).exists()


def duplicate_refund_notice_apply(*, attempt: PaymentAttempt, notice) -> None:
    """A gateway's signed refund notification about a second payment: its refund by our task (already
    booked, or booked here first) or by staff in the gateway's dashboard. Books it once; anything but
    the whole payment refunded is refused, for staff to look at."""
    from payments.errors import CallbackRejected
    from payments.refunds import GATEWAY_ACCEPTED

    if notice.status not in GATEWAY_ACCEPTED:
        logger.warning("refund %s of second payment %s: %s", notice.gateway_refund_id, attempt.pk, notice.status)
        return  # a refund that failed moved no money: the payment stays owed
    if notice.amount != attempt.amount:
        raise CallbackRejected("a second payment is refunded whole", code="amount_mismatch")
    _refund_book(attempt, f"refunded via {attempt.provider} {notice.gateway_refund_id}")


def duplicate_payments_open_filter(attempts: QuerySet[PaymentAttempt]) -> QuerySet[PaymentAttempt]:
    """``duplicate_payments_open`` as a filter of a queryset (for lists)."""

    def booked(key) -> Exists:
        prefix = key(0)[:-1]
        return Exists(
            Transaction.objects.filter(
                idempotency_key=Concat(Value(prefix), Cast(OuterRef("pk"), CharField()), output_field=CharField())
            )
        )

    return attempts.filter(booked(_book_key)).exclude(booked(_refund_key))


def duplicate_payment_refund(
    *, attempt_id: int, outside: bool = False, confirmed_by_hand: bool = False, staff=None
) -> bool:
    """Give a second payment back to the customer; True once it is settled (now or before).

    Through the channel's refund API when the provider has one (outside any transaction); with
    ``outside``, recorded as refunded by staff in the gateway's dashboard; with ``confirmed_by_hand``,
    recorded as the payment a manual confirmation of the order already booked (nothing is owed)."""
    attempt = PaymentAttempt.objects.get(pk=attempt_id)
    if not duplicate_payments_open([attempt]):
        return Transaction.objects.filter(idempotency_key=_refund_key(attempt.pk)).exists()
    who = f"staff #{getattr(staff, 'pk', '?')}"
    how = f"refunded outside by {who}"
    if confirmed_by_hand:
        how = f"was the payment confirmed by hand ({who})"
    elif not outside:
        refunded = channel_refund(attempt=attempt, amount=attempt.amount, idempotency_key=f"duplicate-{attempt.token}")
        if refunded is None:
            return False
        how = refunded
    _refund_book(attempt, how)
    return True


def _refund_book(attempt: PaymentAttempt, how: str) -> None:
    """``customer_payments_owed`` → payment clearing for ``attempt``, once (the task and the gateway's
    notification of the same refund may both get here)."""
    with transaction.atomic():
        PaymentAttempt.objects.select_for_update().get(pk=attempt.pk)
        if Transaction.objects.filter(idempotency_key=_refund_key(attempt.pk)).exists():
            return
        reference = attempt.order.number if attempt.order_id else attempt.token[:64]
        ledger_post(
            kind="refund",
            idempotency_key=_refund_key(attempt.pk),
            reference=reference,
            memo=f"second payment of {reference} {how}"[:255],
            lines=[Line(OWED_ACCOUNT, attempt.amount), Line("payment_clearing", -attempt.amount)],
        )


def channel_refund(*, attempt: PaymentAttempt, amount: Decimal, idempotency_key: str) -> str | None:
    """Refund ``amount`` of ``attempt`` through its provider's refund API (call it outside any
    transaction). Returns how ("refunded via stripe re_…"), or None when the provider has no refund
    API, is unavailable, or did not accept the refund (logged; try again later or refund by hand)."""
    from payments.errors import ProviderUnavailable, RefundOutcomeUnknown
    from payments.providers import PROVIDERS
    from payments.refunds import GATEWAY_ACCEPTED

    provider = PROVIDERS.get(attempt.provider)
    if not callable(getattr(provider, "refund", None)):
        return None  # no refund API (epay, configurable gateways): staff refund it
    try:
        gateway_id, status = provider.refund(attempt=attempt, amount=amount, idempotency_key=idempotency_key)
    except (ProviderUnavailable, RefundOutcomeUnknown) as exc:
        logger.warning("payment %s not refunded: %s", attempt.pk, exc.code)
        return None
    if status not in GATEWAY_ACCEPTED:
        logger.warning("payment %s: refund %s", attempt.pk, status)
        return None
    return f"refunded via {attempt.provider} {gateway_id}"
