"""Refunds: staff give back all or part of what a customer paid for an order.

Destinations (``Refund.Destination``):

- ``channel`` — the way the customer paid: Stripe (a real Refund on the shop's account, one
  idempotency key per refund), the sandbox (an instant simulated refund), or the wallet for an order
  paid from the wallet. A provider can refund through its gateway when it has a ``refund`` method;
  易支付 V1 has no refund API, so it has none.
- ``wallet`` — credited to the customer's wallet (``wallet:<user id>``); guests have none.
- ``outside`` — staff already gave the money back in the gateway's own dashboard; only recorded.

The sum of an order's pending and succeeded refunds never exceeds what was paid: that is checked and
the refund recorded ``pending`` under the order's row lock. A gateway is called afterwards, outside any
transaction (record pending → call → settle), like ``payments.services._attempt_open`` does for starting
payments. Settling books the ledger (``refunds`` debited, wallet or payment clearing credited, one
transaction per refund, keyed by its token), moves the order to partially refunded / refunded with a
history entry, flags the codes the customer already received, and e-mails the customer.
"""

from __future__ import annotations

import secrets
from decimal import Decimal, InvalidOperation

from django.db import connection, transaction
from django.db.models import Q, Sum
from django.utils import timezone
from django.utils.translation import gettext as _
from django_tenants.utils import schema_context

from catalog.pricing import money
from ledger.errors import InsufficientFunds
from ledger.services import Line, ledger_post
from orders.models import Order, OrderEvent
from orders.services import REFUNDABLE, order_refund_record, order_refund_reversed
from payments.duplicates import duplicate_payment_is, duplicate_refund_notice_apply
from payments.errors import CallbackRejected, ProviderUnavailable, RefundOutcomeUnknown, RefundRefused
from payments.models import PaymentAttempt, Refund
from payments.providers import PROVIDERS, RefundNotice
from payments.wallet import PROVIDER_CODE as WALLET_PROVIDER
from payments.wallet import wallet_account

D = Refund.Destination
MIN_REASON_LENGTH = 3
# Stripe accepts a refund as "pending" for some payment methods; the money is on its way back.
GATEWAY_ACCEPTED = {"succeeded", "pending", "requires_action"}
# A refund in these states never reached the customer (Stripe: failed, or canceled before it was sent).
GATEWAY_FAILED = {"failed", "canceled"}
DASHBOARD_REASON = "refunded in the gateway's dashboard"
# A branch order Site A collected, refunded at Site A's gateway beyond what the branch recorded itself.
COLLECTED_DASHBOARD_REASON = "refunded in Site A's payment gateway"


def _can_refund_to_channel(order: Order) -> bool:
    if order.payment_provider == WALLET_PROVIDER:
        return bool(order.customer_id)  # the wallet of a deleted account is gone
    return callable(getattr(PROVIDERS.get(order.payment_provider), "refund", None))


def _to_wallet(refund: Refund) -> bool:
    return refund.destination == D.WALLET or (refund.destination == D.CHANNEL and refund.provider == WALLET_PROVIDER)


def refund_destinations(order: Order) -> list[str]:
    """Where a refund of ``order`` may go, the original channel first when it can take one."""
    if order.payment_provider == WALLET_PROVIDER and not order.customer_id:
        return [D.OUTSIDE]
    destinations = []
    if _can_refund_to_channel(order):
        destinations.append(D.CHANNEL)
    if order.customer_id and order.payment_provider != WALLET_PROVIDER:
        destinations.append(D.WALLET)
    if order.payment_provider != WALLET_PROVIDER:
        destinations.append(D.OUTSIDE)
    return destinations


def order_refunded_amount(order: Order, *, include_pending: bool = True) -> Decimal:
    """What has been refunded (by default with refunds still at the gateway) on ``order``."""
    statuses = [Refund.Status.SUCCEEDED, *([Refund.Status.PENDING] if include_pending else [])]
    total = Refund.objects.filter(order=order, status__in=statuses).aggregate(total=Sum("amount"))["total"]
    return total or Decimal("0.00")


def order_refundable_amount(order: Order) -> Decimal:
    """What may still be refunded: the amount paid minus every pending or succeeded refund."""
    if order.paid_at is None or order.status not in REFUNDABLE:
        return Decimal("0.00")
    return max(order.total - order_refunded_amount(order), Decimal("0.00"))


def _parse_amount(amount) -> Decimal:
    try:
        value = money(Decimal(str(amount).strip()))
    except (InvalidOperation, ArithmeticError, ValueError):
        raise RefundRefused(_("Enter a valid amount."), field="amount", code="invalid_amount") from None
    if not value.is_finite() or value <= 0:
        raise RefundRefused(_("The amount must be more than zero."), field="amount", code="invalid_amount")
    return value


def _check(order: Order, *, amount: Decimal, destination: str) -> None:
    if order.source != Order.Source.STOREFRONT:
        raise RefundRefused(
            _("Orders placed through the branch API are settled with the branch, not refunded here."),
            code="not_refundable_source",
        )
    if order.paid_at is None or order.status not in REFUNDABLE:
        raise RefundRefused(
            _("Only a paid order can be refunded (this one is %(status)s).") % {"status": order.get_status_display()},
            code="order_not_refundable",
        )
    if destination == D.WALLET and not order.customer_id:
        raise RefundRefused(
            _("This order was placed by a guest, who has no wallet: refund it to the original payment channel."),
            field="destination",
            code="guest_has_no_wallet",
        )
    if destination not in refund_destinations(order):
        raise RefundRefused(
            _("This order cannot be refunded that way (paid via %(provider)s).")
            % {"provider": order.payment_provider or "?"},
            field="destination",
            code="destination_unavailable",
        )
    left = order.total - order_refunded_amount(order)
    if amount > left:
        raise RefundRefused(
            _("At most %(left)s %(currency)s can still be refunded on this order.")
            % {"left": max(left, Decimal("0.00")), "currency": order.currency},
            field="amount",
            code="amount_exceeds_refundable",
        )


def refund_create(*, order_id: int, amount, destination: str, staff, reason: str) -> Refund:
    """Refund ``amount`` of a paid order to ``destination``; returns the settled refund.

    Raises ``RefundRefused`` (nothing booked, nothing owed) or ``RefundOutcomeUnknown`` (the gateway
    did not answer; the refund stays pending and can be submitted again with ``refund_submit``).
    """
    amount = _parse_amount(amount)
    reason = (reason or "").strip()
    if len(reason) < MIN_REASON_LENGTH:
        raise RefundRefused(_("Please give a reason."), field="reason", code="reason_missing")
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order_id)
        if order.payment_provider == WALLET_PROVIDER and destination == D.WALLET:
            destination = D.CHANNEL  # the wallet is this order's channel
        _check(order, amount=amount, destination=destination)
        refund = Refund.objects.create(
            order=order,
            amount=amount,
            currency=order.currency,
            destination=destination,
            provider=order.payment_provider,
            token=secrets.token_urlsafe(24),
            staff=staff if getattr(staff, "is_authenticated", False) else None,
            reason=reason[:255],
        )
        if destination != D.CHANNEL or _to_wallet(refund):
            _settle(order, refund)  # no gateway involved: booked at once
            return refund
    return refund_submit(refund_id=refund.pk)


def refund_submit(*, refund_id: int) -> Refund:
    """Send a pending refund to its gateway (outside any transaction) and settle it. Safe to repeat:
    the gateway sees the same idempotency key, and a settled refund is returned unchanged."""
    refund = Refund.objects.select_related("order").get(pk=refund_id)
    if refund.status != Refund.Status.PENDING:
        return refund
    provider = PROVIDERS.get(refund.provider)
    attempt = (
        PaymentAttempt.objects.filter(
            order_id=refund.order_id, provider=refund.provider, status=PaymentAttempt.Status.SUCCEEDED
        )
        .order_by("-succeeded_at")
        .first()
    )
    if provider is None or not callable(getattr(provider, "refund", None)) or attempt is None:
        _fail(refund, "no successful payment through this channel to refund")
        raise RefundRefused(
            _("There is no payment through this channel to refund."), field="destination", code="no_channel_payment"
        )
    try:
        gateway_id, gateway_status = provider.refund(
            attempt=attempt, amount=refund.amount, idempotency_key=f"refund-{refund.token}", refund_token=refund.token
        )
    except RefundOutcomeUnknown:
        Refund.objects.filter(pk=refund.pk, status=Refund.Status.PENDING).update(
            error="the gateway did not answer; submit again"
        )
        raise
    except ProviderUnavailable as exc:
        _fail(refund, exc.message)
        raise RefundRefused(
            _("The payment gateway refused the refund: %(reason)s") % {"reason": exc.message},
            code="gateway_refused",
        ) from None
    if gateway_status not in GATEWAY_ACCEPTED:
        _fail(refund, f"gateway status {gateway_status or '?'}", gateway_id=gateway_id, gateway_status=gateway_status)
        raise RefundRefused(
            _("The payment gateway refused the refund (%(status)s).") % {"status": gateway_status or "?"},
            code="gateway_refused",
        )
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=refund.order_id)
        refund = Refund.objects.select_for_update().get(pk=refund.pk)
        if refund.status == Refund.Status.PENDING:
            refund.gateway_refund_id, refund.gateway_status = gateway_id, gateway_status
            _settle(order, refund)
    return refund


def _fail(refund: Refund, error: str, *, gateway_id: str = "", gateway_status: str = "") -> None:
    """A refund the gateway refused frees its amount again; nothing was booked."""
    Refund.objects.filter(pk=refund.pk, status=Refund.Status.PENDING).update(
        status=Refund.Status.FAILED,
        error=str(error)[:255],
        gateway_refund_id=gateway_id,
        gateway_status=gateway_status,
        completed_at=timezone.now(),
    )


def _settle(order: Order, refund: Refund) -> None:
    """Book a refund and move the order on; the caller holds the order's row lock."""
    from branch_api.provider.collect import PROVIDER_PREFIX as COLLECTED
    from branch_api.provider.collect import collect_refund_book

    if _to_wallet(refund):
        credit = wallet_account(order.customer).code
    elif order.payment_provider == COLLECTED:
        # A branch order Site A collected: paid back from the branch's money held at Site A.
        try:
            credit = collect_refund_book(order=order, amount=refund.amount, token=refund.token, reason=refund.reason)
        except InsufficientFunds:
            raise RefundRefused(
                _("The shop's balance at Site A does not cover this refund; top it up first."),
                code="balance_insufficient",
            ) from None
    else:
        # The money leaves the shop through the gateway it came in by (or did so outside the system).
        credit = "payment_clearing"
    dims = {"order_id": order.pk}
    ledger_post(
        kind="refund",
        idempotency_key=f"refund:{refund.token}",
        reference=order.number,
        memo=f"refund of {order.number} → {refund.destination} ({refund.reason})"[:255],
        lines=[Line("refunds", refund.amount, dims), Line(credit, -refund.amount, dims)],
    )
    refund.status = Refund.Status.SUCCEEDED
    refund.completed_at = timezone.now()
    refund.error = ""
    refund.save(update_fields=["status", "completed_at", "error", "gateway_refund_id", "gateway_status"])
    order_refund_record(
        order=order,
        refunded_total=order_refunded_amount(order, include_pending=False),
        actor=refund.staff,
        message=f"refunded {refund.amount} {refund.currency} to {refund.get_destination_display()}: {refund.reason}",
    )
    refund_id, schema = refund.pk, connection.schema_name
    # The task carries the schema current when it is queued: the refund's shop, not the commit's
    # (a refund Site A's gateway reports is settled in a branch's schema from Site A's).
    transaction.on_commit(lambda: _email_customer(refund_id, schema))


def refund_gateway_notice_apply(*, provider_code: str, notice: RefundNotice) -> PaymentAttempt:
    """Apply what a gateway's signed notification says about one refund; idempotent, so repeated or
    out-of-order notifications change nothing more. Returns the refunded payment attempt.

    - A refund of ours still pending is settled (or failed), as ``refund_submit`` would have.
    - A refund made in the gateway's dashboard (no refund of ours has its id or token) is recorded as
      a channel refund and settled like one: ledger, order status, customer e-mail.
    - A refund of ours that had succeeded and the gateway now reports failed is reversed: the
      ledger transaction is mirrored, the refund is marked failed with the reason (its amount may be
      refunded again) and the order moves back, with a history entry for staff.

    A payment Site A collected for a branch's order (purpose ``branch_sale``) goes to
    ``collected_refund_notice_apply``, or, a second payment of it, to
    ``branch_api.provider.collect.branch_sale_duplicate_refund_notice_apply``.

    Raises ``CallbackRejected`` (the gateway retries; the log shows why) for a payment we do not know,
    another currency, an amount that does not match our refund, or a dashboard refund beyond what
    is left to refund.
    """
    attempt = (
        PaymentAttempt.objects.filter(
            provider=provider_code,
            gateway_reference=notice.payment_reference,
            purpose__in=[PaymentAttempt.Purpose.ORDER, PaymentAttempt.Purpose.BRANCH_SALE],
            status=PaymentAttempt.Status.SUCCEEDED,
        ).first()
        if notice.payment_reference
        else None
    )
    if attempt is None:
        raise CallbackRejected("refund of an unknown payment", code="unknown_payment")
    if notice.currency != attempt.currency:
        raise CallbackRejected("currency does not match", code="currency_mismatch")
    if attempt.purpose == PaymentAttempt.Purpose.BRANCH_SALE:
        # A branch order Site A collected (platform-collect): its refunds belong to the branch's order.
        from branch_api.provider.collect import branch_sale_duplicate_is, branch_sale_duplicate_refund_notice_apply

        if branch_sale_duplicate_is(attempt):
            branch_sale_duplicate_refund_notice_apply(attempt=attempt, notice=notice)
        else:
            collected_refund_notice_apply(attempt=attempt, notice=notice)
        return attempt
    if duplicate_payment_is(attempt):
        # A second payment of the order, given back on its own: not a refund of the order.
        duplicate_refund_notice_apply(attempt=attempt, notice=notice)
        return attempt
    failed = notice.status in GATEWAY_FAILED
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=attempt.order_id)
        match = Q(gateway_refund_id=notice.gateway_refund_id)
        if notice.refund_token:
            match |= Q(token=notice.refund_token)
        refund = Refund.objects.select_for_update().filter(match, order=order).order_by("pk").first()
        if refund is None:
            if notice.status in GATEWAY_ACCEPTED:
                _dashboard_refund_record(order, provider_code=provider_code, notice=notice)
            return attempt  # a dashboard refund that failed moved no money
        if refund.amount != notice.amount:
            raise CallbackRejected("refund amount does not match", code="amount_mismatch")
        refund.gateway_refund_id, refund.gateway_status = notice.gateway_refund_id, notice.status
        if refund.status == Refund.Status.PENDING and failed:
            refund.save(update_fields=["gateway_refund_id", "gateway_status"])
            _fail(refund, f"the gateway failed the refund ({notice.failure_reason or notice.status})",
                  gateway_id=notice.gateway_refund_id, gateway_status=notice.status)  # fmt: skip
        elif refund.status == Refund.Status.PENDING and notice.status in GATEWAY_ACCEPTED:
            _settle(order, refund)
        elif refund.status == Refund.Status.SUCCEEDED and failed:
            _reverse(order, refund, reason=notice.failure_reason or notice.status)
        elif refund.status == Refund.Status.SUCCEEDED:
            refund.save(update_fields=["gateway_refund_id", "gateway_status"])
    return attempt


def _dashboard_refund_record(
    order: Order,
    *,
    provider_code: str,
    notice: RefundNotice,
    amount: Decimal | None = None,
    reason: str = DASHBOARD_REASON,
) -> Refund:
    """Record and settle a refund staff made in the gateway's dashboard (``amount`` of it: all by
    default); the caller holds the order lock."""
    amount = notice.amount if amount is None else amount
    if order.paid_at is None or order.status not in REFUNDABLE:
        raise CallbackRejected("refund of an order that is not refundable", code="order_not_refundable")
    if amount > order.total - order_refunded_amount(order):
        # More than we think is left (e.g. also refunded to the wallet): staff must look at it.
        raise CallbackRejected("refund exceeds what is left to refund", code="amount_exceeds_refundable")
    refund = Refund.objects.create(
        order=order,
        amount=amount,
        currency=order.currency,
        destination=D.CHANNEL,
        provider=provider_code,
        token=secrets.token_urlsafe(24),
        gateway_refund_id=notice.gateway_refund_id,
        gateway_status=notice.status,
        reason=reason,
    )
    try:
        _settle(order, refund)
    except RefundRefused as exc:  # a branch's balance at Site A too low to pay it: staff must look at it
        raise CallbackRejected(exc.message, code=exc.code) from None
    return refund


def collected_refund_notice_apply(*, attempt: PaymentAttempt, notice: RefundNotice) -> None:
    """Apply a refund Site A's gateway reports for the collected payment of a branch sale
    (platform-collect; called in Site A's schema, ``attempt`` is Site A's). Once per gateway refund id
    (``BranchSaleRefund``), under the branch order's row lock, so repeats, out-of-order events and a
    refund the branch records at the same moment change nothing more.

    What the gateway refunded is first set against what the branch's order has booked as given back
    through Site A's channel and no gateway refund has accounted for yet — the refunds the branch
    recorded by hand (*outside*), which Site A's staff make in the gateway at the branch's request.
    Only the rest is booked: a channel refund of the branch's order "refunded in Site A's payment
    gateway", in both ledgers like a refund recorded by hand (``collect_refund_book``: the branch's
    ``prepaid_upstream`` and its balance at Site A), the order moved on, the customer e-mailed. A
    refund the gateway fails after it was booked is booked back on both sides.

    Raises ``CallbackRejected`` (the gateway retries; the log shows why): the branch's order is
    missing or not refundable, an amount other than the one already seen for this refund, more than
    is left to refund (``amount_exceeds_refundable``), or a branch balance that does not cover it
    (``balance_insufficient``).
    """
    from branch_api.provider.models import BranchSale, BranchSaleRefund

    sale = BranchSale.objects.select_related("branch").get(pk=attempt.subject_id)
    shop = sale.branch.schema_name
    with transaction.atomic():
        with schema_context(shop):
            order = Order.objects.select_for_update().filter(pk=sale.order_id, number=sale.order_number).first()
        if order is None:
            raise CallbackRejected("refund of a branch order that is not there", code="unknown_payment")
        seen = (
            BranchSaleRefund.objects.select_for_update()
            .filter(provider=attempt.provider, gateway_refund_id=notice.gateway_refund_id)
            .first()
        )
        if seen is not None:
            _collected_refund_update(order, seen, notice=notice, shop=shop)
            return
        known = {"sale": sale, "provider": attempt.provider, "gateway_refund_id": notice.gateway_refund_id}
        if notice.status not in GATEWAY_ACCEPTED:
            # Failed before we heard of it: no money moved. Kept, so that an older snapshot of the same
            # refund ("pending") arriving after this books nothing either.
            BranchSaleRefund.objects.create(**known, amount=notice.amount, gateway_status=notice.status)
            return
        accounted = BranchSaleRefund.objects.filter(sale=sale).exclude(gateway_status__in=GATEWAY_FAILED)
        accounted = accounted.aggregate(total=Sum("amount"))["total"] or Decimal("0.00")
        with schema_context(shop):
            given_back = Refund.objects.filter(order=order, status=Refund.Status.SUCCEEDED)
            given_back = given_back.exclude(destination=D.WALLET).aggregate(total=Sum("amount"))["total"] or Decimal(0)
            recorded_by_hand = min(notice.amount, max(given_back - accounted, Decimal("0.00")))
            booked, token = notice.amount - recorded_by_hand, ""
            if booked > 0:
                reason = f"{COLLECTED_DASHBOARD_REASON} ({attempt.provider} {notice.gateway_refund_id})"
                refund = _dashboard_refund_record(
                    order, provider_code=order.payment_provider, notice=notice, amount=booked, reason=reason
                )
                token = refund.token
            if recorded_by_hand > 0:
                _order_note(
                    order,
                    f"Site A's gateway refunded {recorded_by_hand} {order.currency} ({attempt.provider} "
                    f"{notice.gateway_refund_id}): the refund recorded by hand, not booked again",
                )
        BranchSaleRefund.objects.create(
            **known, amount=notice.amount, gateway_status=notice.status, booked=booked, refund_token=token
        )


def _collected_refund_update(order: Order, seen, *, notice: RefundNotice, shop: str) -> None:
    """News about a gateway refund of a collected branch sale already applied; the caller holds the
    branch order's row lock and ``seen``'s."""
    if notice.amount != seen.amount:
        raise CallbackRejected("refund amount does not match", code="amount_mismatch")
    if seen.gateway_status in GATEWAY_FAILED:
        return  # failed and canceled are final at the gateway: a later word about it is an older one
    if notice.status in GATEWAY_FAILED:
        reason = notice.failure_reason or notice.status
        with schema_context(shop):
            refund = Refund.objects.select_for_update().filter(token=seen.refund_token).first() if seen.booked else None
            if refund is not None and refund.status == Refund.Status.SUCCEEDED:
                _reverse(order, refund, reason=reason)
            if seen.amount > seen.booked:
                # Booked by the branch's refund recorded by hand: the customer still has to get it back
                # through Site A's gateway; the next refund there is set against it.
                _order_note(
                    order,
                    f"Site A's gateway failed its refund of {seen.amount - seen.booked} {order.currency} "
                    f"({seen.gateway_refund_id}, {reason}) that the refund recorded by hand stood for",
                )
    seen.gateway_status = notice.status
    seen.save(update_fields=["gateway_status", "updated"])


def _order_note(order: Order, message: str) -> None:
    """A history entry on ``order`` for its staff that does not change its status."""
    OrderEvent.objects.create(order=order, from_status=order.status, to_status=order.status, message=message[:255])


def _reverse(order: Order, refund: Refund, *, reason: str) -> None:
    """Book back a channel refund the gateway failed after it had succeeded; the caller holds the
    order's row lock. Its amount is free to be refunded again."""
    from branch_api.provider.collect import PROVIDER_PREFIX as COLLECTED
    from branch_api.provider.collect import collect_refund_reverse_book

    if _to_wallet(refund):
        return  # no gateway involved: a wallet refund cannot fail later
    debit = "payment_clearing"
    if order.payment_provider == COLLECTED:
        # Site A's gateway failed it: the money is back in the branch's balance there, on both sides.
        debit = collect_refund_reverse_book(order=order, amount=refund.amount, token=refund.token, reason=reason)
    dims = {"order_id": order.pk}
    ledger_post(
        kind="refund",
        idempotency_key=f"refund-reversed:{refund.token}",
        reference=order.number,
        memo=f"refund of {order.number} failed at the gateway ({reason})"[:255],
        lines=[Line(debit, refund.amount, dims), Line("refunds", -refund.amount, dims)],
    )
    refund.status = Refund.Status.FAILED
    refund.error = f"the gateway failed this refund after it was made ({reason}); booked back"[:255]
    refund.save(update_fields=["status", "error", "gateway_refund_id", "gateway_status"])
    order_refund_reversed(
        order=order,
        refunded_total=order_refunded_amount(order, include_pending=False),
        message=f"the gateway failed the refund of {refund.amount} {refund.currency} ({reason}): booked back, "
        "refundable again",
    )


def _email_customer(refund_id: int, schema: str) -> None:
    from orders.tasks import order_refund_email_task

    with schema_context(schema):
        order_refund_email_task.delay(refund_id)


def orders_refund_to_wallet(*, order_ids: list[int], staff, reason: str) -> tuple[list[Refund], list[tuple[str, str]]]:
    """The one-click refund of paid orders left without stock: everything still refundable goes to
    the customer's wallet. Returns (refunds made, [(order number, why not)] for the others)."""
    made, skipped = [], []
    for order in Order.objects.filter(pk__in=order_ids).order_by("pk"):
        if order.status != Order.Status.AWAITING_STOCK:
            skipped.append((order.number, _("not awaiting stock")))
            continue
        try:
            made.append(
                refund_create(
                    order_id=order.pk,
                    amount=order_refundable_amount(order),
                    destination=D.WALLET,
                    staff=staff,
                    reason=reason,
                )
            )
        except RefundRefused as exc:
            skipped.append((order.number, exc.message))
    return made, skipped
