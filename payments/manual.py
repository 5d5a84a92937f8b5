"""Manual payment confirmation (补单): staff confirm a payment the gateway took but never called back.

Guarded by a per-shop confirmation password (a Django password hash in ``PaymentSettings``), rate
limited per staff user, audited in ``ManualConfirmation``, and applied through the normal pipeline
(``order_mark_paid``: ledger, delivery, customer e-mail). Staff never give an amount: it is what the
customer's open payment attempt asked the gateway for (the order total plus a customer-paid channel
fee, which is booked like a gateway-confirmed one), or the order total when there is no open attempt.
"""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.hashers import check_password, make_password
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from branch_api.provider.collect import BRANCH_FUNDING_ACCOUNT, collect_mode_active
from branch_api.provider.collect import PROVIDER_PREFIX as COLLECTED
from orders.models import Order
from orders.services import order_mark_paid
from payments.errors import ManualConfirmationRefused
from payments.fees import payment_fee_book
from payments.models import ManualConfirmation, PaymentAttempt, PaymentSettings

PROVIDER = "manual"
MIN_REASON_LENGTH = 5
MAX_WRONG_ATTEMPTS = 5
WINDOW_SECONDS = 15 * 60
CONFIRMABLE = (Order.Status.PENDING_PAYMENT, Order.Status.EXPIRED, Order.Status.CANCELLED)


def confirmation_password_set(*, raw_password: str) -> None:
    """Store the shop's confirmation password as a hash (never in plain text)."""
    settings_row = PaymentSettings.load()
    settings_row.confirmation_password = make_password(raw_password)
    settings_row.save(update_fields=["confirmation_password", "updated"])


def confirmation_password_is_set() -> bool:
    row = PaymentSettings.objects.filter(pk=1).only("confirmation_password").first()
    return bool(row and row.confirmation_password)


def _failures_key(staff) -> str:
    return f"manual-confirm-fail:{connection.schema_name}:{staff.pk}"


def _failures(staff) -> int:
    return int(cache.get(_failures_key(staff)) or 0)


def _failure_record(staff) -> None:
    key = _failures_key(staff)
    # Fixed window: the first failure opens it, later ones count within it.
    if not cache.add(key, 1, timeout=WINDOW_SECONDS):
        try:
            cache.incr(key)
        except ValueError:
            cache.set(key, 1, timeout=WINDOW_SECONDS)


def manual_confirmation_attempt(order: Order) -> PaymentAttempt | None:
    """The order's open payment attempt a manual confirmation applies to: the latest one still
    waiting for its notification, for the order's current total and currency."""
    attempts = PaymentAttempt.objects.filter(
        order=order, purpose=PaymentAttempt.Purpose.ORDER, status=PaymentAttempt.Status.CREATED
    ).order_by("-created", "-pk")
    for attempt in attempts[:20]:
        if attempt.goods_amount == order.total and attempt.currency == order.currency:
            return attempt
    return None


def manual_confirmation_amount(order: Order) -> Decimal:
    """What a manual confirmation of ``order`` confirms: its open attempt's amount (a surcharge
    included), else the order total."""
    attempt = manual_confirmation_attempt(order)
    return attempt.amount if attempt is not None else order.total


def payment_confirm_manually(
    *, order_id: int, staff, confirmation_password: str, reason: str, gateway_reference: str
) -> Order:
    """Confirm an order's payment by hand and deliver it; raises ``ManualConfirmationRefused``."""
    row = PaymentSettings.objects.filter(pk=1).first()
    if row is None or not row.confirmation_password:
        raise ManualConfirmationRefused(
            _("No confirmation password is set for this shop. Set one under Payments → Payment settings first."),
            code="no_confirmation_password",
        )
    if _failures(staff) >= MAX_WRONG_ATTEMPTS:
        raise ManualConfirmationRefused(
            _("Too many wrong confirmation passwords. Please wait 15 minutes and try again."),
            code="rate_limited",
        )
    if not check_password(confirmation_password or "", row.confirmation_password):
        _failure_record(staff)
        raise ManualConfirmationRefused(
            _("The confirmation password is wrong."), field="confirmation_password", code="wrong_password"
        )
    reason = (reason or "").strip()
    if len(reason) < MIN_REASON_LENGTH:
        raise ManualConfirmationRefused(
            _("Please give a reason of at least %(count)d characters.") % {"count": MIN_REASON_LENGTH},
            field="reason",
            code="reason_too_short",
        )
    gateway_reference = (gateway_reference or "").strip()[:128]
    with transaction.atomic():
        # The attempt before the order, in the order the callback pipeline locks them (no deadlock
        # with a notification arriving at the same moment).
        attempt = manual_confirmation_attempt(Order.objects.get(pk=order_id))
        if attempt is not None:
            attempt = PaymentAttempt.objects.select_for_update().get(pk=attempt.pk)
        order = Order.objects.select_for_update().get(pk=order_id)
        if order.paid_at is not None or order.status not in CONFIRMABLE:
            raise ManualConfirmationRefused(
                _("Only an unpaid, expired or cancelled order can be confirmed manually (this one is %(status)s).")
                % {"status": order.get_status_display()},
                code="order_not_confirmable",
            )
        if attempt is not None and attempt.status != PaymentAttempt.Status.CREATED:
            attempt = None  # settled meanwhile (failed): the order total alone
        ManualConfirmation.objects.create(
            order=order,
            staff=staff,
            reason=reason,
            gateway_reference=gateway_reference,
            amount=attempt.amount if attempt is not None else order.total,
            currency=order.currency,
        )
        if attempt is not None:
            # The gateway took the attempt's amount: its fee is booked as for a notified payment, and a
            # late notification for it finds it applied and changes nothing.
            attempt.status = PaymentAttempt.Status.SUCCEEDED
            attempt.succeeded_at = timezone.now()
            attempt.save(update_fields=["status", "succeeded_at"])
            payment_fee_book(attempt=attempt)
        provider, funding_account, reference = PROVIDER, "payment_clearing", gateway_reference
        if collect_mode_active():
            # Site A collects this shop's payments: the customer paid through Site A's channel, so the
            # money is the branch's at Site A (as for a notified payment; refunds come from there too).
            provider, funding_account = COLLECTED, BRANCH_FUNDING_ACCOUNT
            reference = f"confirmed by hand: {gateway_reference or '-'}"
        return order_mark_paid(
            order_id=order.pk,
            amount=order.total,
            currency=order.currency,
            provider=provider,
            payment_reference=reference or f"manual #{staff.pk}",
            actor=staff,
            funding_account=funding_account,
        )
