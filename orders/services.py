"""The order lifecycle: place (reserve stock), pay, deliver, expire, fulfil by hand.

State machine (every transition writes an OrderEvent in the same transaction):

    pending_payment ──paid──▶ delivered                (automatic goods, codes assigned)
           │            └──▶ manual_fulfilment ──▶ delivered   (staff)
           │            └──▶ awaiting_stock    ──▶ delivered   (stock arrived / staff)
           ├──expire──▶ expired ──late payment──▶ delivered | awaiting_stock
           └──cancel──▶ cancelled

    any paid state ──refund──▶ partially_refunded ──refund──▶ … ──▶ refunded   (payments.refunds)
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, replace
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password
from django.db import transaction
from django.db.models import F, Model, Q, Sum
from django.utils import timezone

from cardvault.models import Card, CardAssignment
from cardvault.services import cards_assign, cards_release_for_line, cards_reserve, cards_sell, out_of_stock
from catalog.models import Product, Variant
from catalog.pricing import PriceBook, Quote, money, tiers_prefetch
from catalog.selectors import variant_units
from core.sql import insert_values, prepared_cursor
from ledger.models import Account
from ledger.services import Line, Posting, ledger_post, ledger_post_many, ledger_post_new, shop_currency
from orders.errors import (
    CheckoutInputMissing,
    OrderStateError,
    PriceChanged,
    QuantityOutOfRange,
    VariantUnavailable,
)
from orders.models import ManualDelivery, Order, OrderEvent, OrderLine

S = Order.Status
# Alphabet without look-alikes (0/O, 1/I/L): numbers are read out over the phone and typed in.
_NUMBER_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


def order_number_new() -> str:
    """Unguessable: 16 random symbols from a 31-letter alphabet (~79 bits)."""
    return "".join(secrets.choice(_NUMBER_ALPHABET) for _ in range(16))


@dataclass(frozen=True)
class CartItem:
    variant_id: int
    quantity: int
    expected_unit_price: Decimal | None = None  # what the customer saw; a mismatch is refused
    checkout_input: dict = field(default_factory=dict)


def _event(order: Order, to_status: str, *, actor=None, message: str = "", from_status: str | None = None) -> None:
    OrderEvent.objects.create(
        order=order,
        from_status=order.status if from_status is None else from_status,
        to_status=to_status,
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        message=message[:255],
    )


def _transition(order: Order, to_status: str, *, actor=None, message: str = "", **fields) -> None:
    _event(order, to_status, actor=actor, message=message)
    order.status = to_status
    for name, value in fields.items():
        setattr(order, name, value)
    order.save(update_fields=["status", *fields])


def _clean_checkout_input(product: Product, submitted: dict) -> dict:
    cleaned = {}
    for spec in product.checkout_fields or []:
        name = spec.get("name")
        value = str(submitted.get(name, "")).strip()[:500]
        if spec.get("required") and not value:
            raise CheckoutInputMissing(f"Please fill in: {spec.get('label') or name}.", field=name)
        if value:
            cleaned[name] = value
    return cleaned


def _items_price(
    items: list[CartItem], variants: dict[int, Variant], *, book: PriceBook, unit_prices: dict[int, Decimal] | None
) -> list[tuple[CartItem, Variant, Quote, dict]]:
    """Re-derive what an order may contain and cost: availability, quantity limits, server-side price
    (``unit_prices`` is a price agreed elsewhere, never below cost) and the stock of non-vault goods."""
    # Vault stock of automatic goods is settled when codes are reserved or taken (SKIP LOCKED).
    stock: dict[int, int | None] = {}
    priced = []
    for item in items:
        variant = variants.get(item.variant_id)
        if variant is None or not (
            variant.is_active and variant.product.is_active and variant.product.category.is_active
        ):
            raise VariantUnavailable(field="variant")
        product = variant.product
        if not product.min_quantity <= item.quantity <= product.max_quantity:
            raise QuantityOutOfRange(
                f"Please choose between {product.min_quantity} and {product.max_quantity}.", field="quantity"
            )
        quote = book.quote(variant, quantity=item.quantity)
        if unit_prices is not None:
            # A price agreed elsewhere (a branch's cost under its terms); never below cost all the same.
            quote = replace(
                quote, unit_price=max(money(unit_prices[variant.pk]), quote.cost), rule_label="branch terms"
            )
        if item.expected_unit_price is not None and money(item.expected_unit_price) != quote.unit_price:
            raise PriceChanged(field="price")
        if product.delivery_mode != Product.DeliveryMode.AUTOMATIC:
            out_of_stock(variant_units(product, variant, stock), item.quantity)
        priced.append((item, variant, quote, _clean_checkout_input(product, item.checkout_input)))
    return priced


def _line_new(
    order: Order, item: CartItem, variant: Variant, quote: Quote, checkout_input: dict, **fields
) -> OrderLine:
    return OrderLine(
        order=order,
        variant=variant,
        product_id_snapshot=variant.product_id,
        product_name=variant.product.name,
        variant_name=variant.name,
        sku=variant.sku,
        delivery_mode=variant.product.delivery_mode,
        quantity=item.quantity,
        unit_price=quote.unit_price,
        unit_cost=quote.cost,
        price_rule=quote.rule_label[:160],
        currency=order.currency,
        checkout_input=checkout_input,
        **fields,
    )


@transaction.atomic
def order_place(
    *,
    items: list[CartItem],
    email: str,
    lookup_password: str = "",
    customer=None,
    client_ip: str | None = None,
    payment_minutes: int | None = None,
    unit_prices: dict[int, Decimal] | None = None,
    source: str = Order.Source.STOREFRONT,
) -> Order:
    """Create an order at server-side prices and reserve its codes until payment is due.

    Anything the client claims is re-derived: variant availability, quantity limits, price (a stale or
    tampered price raises ``PriceChanged``), stock (``OutOfStock`` — nothing is kept).
    """
    if not items:
        raise VariantUnavailable("Your order is empty.")
    minutes = payment_minutes or settings.ORDER_PAYMENT_MINUTES
    now = timezone.now()
    variants = {
        v.pk: v
        for v in Variant.objects.select_related("product__category")
        .prefetch_related(tiers_prefetch())
        .filter(pk__in=[i.variant_id for i in items])
    }
    priced = _items_price(items, variants, book=PriceBook.default(), unit_prices=unit_prices)

    order = Order.objects.create(
        number=order_number_new(),
        customer=customer if getattr(customer, "is_authenticated", False) else None,
        email=email.strip().lower(),
        lookup_password=make_password(lookup_password) if lookup_password else "",
        currency=shop_currency(),
        total=sum((q.unit_price * i.quantity for i, _, q, _ in priced), Decimal("0")),
        expires_at=now + timedelta(minutes=minutes),
        client_ip=client_ip,
        source=source,
    )
    _event(order, S.PENDING_PAYMENT, actor=customer, message="order placed", from_status="")
    for item, variant, quote, checkout_input in priced:
        line = _line_new(order, item, variant, quote, checkout_input)
        line.save(force_insert=True)
        if variant.product.is_manual:
            if variant.manual_stock is not None:
                if not _manual_stock_move(variant.pk, by=-item.quantity):
                    out_of_stock(0, item.quantity)
            continue
        if variant.product.is_upstream:
            continue  # bought from Site A after payment; its stock was checked as of the last sync
        reserved = cards_reserve(variant_id=variant.pk, line_id=line.pk, quantity=item.quantity, until=order.expires_at)
        if reserved < item.quantity:
            # Single-use codes ran out under concurrent buyers; reusable codes (taken at payment)
            # may still cover the rest. Otherwise the whole order rolls back.
            reusable_left = _reusable_left(variant.pk)
            if reusable_left is not None and reserved + reusable_left < item.quantity:
                out_of_stock(reserved + reusable_left, item.quantity)
    return order


def _reusable_left(variant_id: int) -> int | None:
    qs = Card.objects.filter(variant_id=variant_id, reusable=True, status=Card.Status.AVAILABLE)
    if qs.filter(max_uses__isnull=True).exists():
        return None
    return qs.filter(Q(use_count__lt=F("max_uses"))).aggregate(left=Sum(F("max_uses") - F("use_count")))["left"] or 0


def order_check_lookup(order: Order, *, email: str, password: str) -> bool:
    """Guest lookup: the order's e-mail and its lookup password must both match."""
    return (
        bool(order.lookup_password)
        and order.email == email.strip().lower()
        and check_password(password, order.lookup_password)
    )


@transaction.atomic
def order_mark_paid(
    *,
    order_id: int,
    amount: Decimal,
    currency: str,
    provider: str,
    payment_reference: str,
    actor=None,
    funding_account: str = "payment_clearing",
) -> Order:
    """Record a confirmed payment and deliver what can be delivered, exactly once.

    The order row is locked first; a second confirmation (retried callback, double click, concurrent
    notification) finds the order already paid and changes nothing. The amount and currency must
    match the order (callers verify signatures; this is the last line of defence).
    """
    order = Order.objects.select_for_update().get(pk=order_id)
    if order.paid_at is not None:
        return order
    if money(amount) != order.total or currency != order.currency:
        raise OrderStateError("The paid amount does not match the order.", code="amount_mismatch")
    if order.status not in (S.PENDING_PAYMENT, S.EXPIRED, S.CANCELLED):
        raise OrderStateError()
    late = order.status != S.PENDING_PAYMENT
    now = timezone.now()
    _transition(
        order,
        S.PAID,
        actor=actor,
        message=f"paid via {provider} ({payment_reference})" + (" after expiry" if late else ""),
        paid_at=now,
        payment_provider=provider,
    )
    payment = _payment_posting(
        order,
        order.lines.all(),
        provider=provider,
        payment_reference=payment_reference,
        funding_account=funding_account,
    )
    ledger_post_many([payment])
    if late:
        _manual_stock_retake(order)
    _deliver(order, actor=actor)
    return order


def _payment_posting(order: Order, lines, *, provider: str, payment_reference: str, funding_account: str) -> Posting:
    # Revenue is posted per line so profit per product and per day comes straight from the ledger.
    revenue = [
        Line(
            "sales_revenue",
            -line.line_total,
            {"order_id": order.pk, "product_id": line.product_id_snapshot, "variant_id": line.variant_id},
        )
        for line in lines
    ]
    return Posting(
        kind="order_payment",
        idempotency_key=f"order-paid:{order.number}",
        reference=order.number,
        memo=f"payment {provider} {payment_reference}",
        lines=[Line(funding_account, order.total, {"order_id": order.pk}), *revenue],
    )


@dataclass(frozen=True)
class Sale:
    order: Order
    lines: list[OrderLine]
    assignments: list[CardAssignment]  # each with its card, to reveal
    accounts: dict[str, Account]  # the ledger accounts it moved, by code, balances after (locked)


@transaction.atomic(savepoint=False)
def order_sell(
    *,
    items: list[CartItem],
    variants: dict[int, Variant],
    book: PriceBook,
    unit_prices: dict[int, Decimal],
    email: str,
    provider: str,
    payment_reference: str,
    funding_account: str,
    source: str,
    attached: Model | None = None,
) -> Sale:
    """Place, pay and deliver an order of vault codes in one step, paid from ``funding_account`` (a
    balance the buyer holds with us, e.g. a branch's prepaid balance). ``attached``: a new row that
    points at the order through its ``order`` field (e.g. the branch purchase the order is for),
    inserted in the order's own statement; its primary key is set.

    The same order, history, ledger and codes as ``order_place`` + ``order_mark_paid`` produce for
    automatic goods, without the reservation round: the codes are taken and sold at once. ``variants``
    (with product, category and tiers loaded) must include every item's variant, all of them automatic
    goods with single-use codes. Not enough codes raises ``OutOfStock``, too little money the
    ledger's ``InsufficientFunds``; either way nothing is kept. No savepoints (each costs a round
    trip): the caller's transaction is all or nothing, and rolls back on either error.
    """
    if not items:
        raise VariantUnavailable("Your order is empty.")
    if any(variants[i.variant_id].product.delivery_mode != Product.DeliveryMode.AUTOMATIC for i in items):
        raise VariantUnavailable("Only codes from the vault are sold at once.")
    priced = _items_price(items, variants, book=book, unit_prices=unit_prices)
    now = timezone.now()
    order = Order(
        number=order_number_new(),
        email=email.strip().lower(),
        currency=shop_currency(),
        total=sum((q.unit_price * i.quantity for i, _, q, _ in priced), Decimal("0")),
        status=S.DELIVERED,
        payment_provider=provider,
        expires_at=now,
        paid_at=now,
        delivered_at=now,
        source=source,
    )
    events = [
        OrderEvent(order=order, from_status="", to_status=S.PENDING_PAYMENT, message="order placed"),
        OrderEvent(
            order=order,
            from_status=S.PENDING_PAYMENT,
            to_status=S.PAID,
            message=f"paid via {provider} ({payment_reference})"[:255],
        ),
        OrderEvent(order=order, from_status=S.PAID, to_status=S.DELIVERED, message="codes delivered"),
    ]
    lines = [
        _line_new(order, item, variant, quote, checkout_input, delivered_quantity=item.quantity)
        for item, variant, quote, checkout_input in priced
    ]
    _order_insert(order, events, lines, attached=attached)
    assignments = cards_sell(lines=lines)
    postings = [
        _payment_posting(
            order, lines, provider=provider, payment_reference=payment_reference, funding_account=funding_account
        )
    ]
    postings += [_cost_posting(order, line, [a for a in assignments if a.order_line is line]) for line in lines]
    # The keys name this new order and its lines: they cannot have been posted before.
    posted = ledger_post_new([posting for posting in postings if posting is not None])
    return Sale(order=order, lines=lines, assignments=assignments, accounts=posted.accounts)


def _order_insert(
    order: Order, events: list[OrderEvent], lines: list[OrderLine], *, attached: Model | None = None
) -> None:
    """Insert a new order with its events and lines (and ``attached``, a row pointing at the order)
    in one statement (one round trip instead of three or four); sets the primary keys on the instances."""
    by_order = {"order": ("(SELECT id FROM o)", [])}
    order_sql, order_params = insert_values([order])
    events_sql, events_params = insert_values(events, refs=by_order)
    lines_sql, lines_params = insert_values(lines, refs=by_order)
    attached_cte, attached_params, attached_id = "", [], "NULL::bigint"
    if attached is not None:
        attached_sql, attached_params = insert_values([attached], refs=by_order)
        attached_cte, attached_id = f", a AS ({attached_sql} RETURNING id)", "(SELECT id FROM a)"
    with prepared_cursor() as cursor:
        cursor.execute(
            f"WITH o AS ({order_sql} RETURNING id), e AS ({events_sql}), l AS ({lines_sql} RETURNING id)"
            f"{attached_cte} SELECT (SELECT id FROM o), {attached_id}, l.id FROM l ORDER BY l.id",
            [*order_params, *events_params, *lines_params, *attached_params],
        )
        rows = cursor.fetchall()
    # Multi-row VALUES take their ids from the sequence in order (as bulk_create relies on too).
    order.pk = rows[0][0]
    order._state.adding = False
    for line, (_order_id, _attached_id, line_id) in zip(lines, rows, strict=True):
        line.pk, line.order_id = line_id, order.pk
        line._state.adding = False
    for event in events:
        event.order_id = order.pk
    if attached is not None:
        attached.pk, attached.order = rows[0][1], order
        attached._state.adding = False
        attached._state.db = order._state.db


def _manual_stock_move(variant_id: int, *, by: int = 0, to: int | None = None) -> bool:
    """Move a variant's counted manual stock ``by`` so many (a decrease only if that much is left), or
    set it ``to`` a number; False when there was not enough. ``updated`` is stamped because an UPDATE
    skips ``auto_now`` and the branches' change feed lists variants by it; branches selling the
    variant also hear it within seconds (``stock.changed``, Site A only)."""
    from branch_api.provider.webhooks import stock_changed_soon

    rows = Variant.objects.filter(pk=variant_id)
    if to is not None:
        moved = rows.update(manual_stock=to, updated=timezone.now())
    else:
        if by < 0:
            rows = rows.filter(manual_stock__gte=-by)
        moved = rows.update(manual_stock=F("manual_stock") + by, updated=timezone.now())
    if moved:
        stock_changed_soon([variant_id])
    return bool(moved)


def _manual_stock_retake(order: Order) -> None:
    """A paid-after-expiry order gave its manual stock back; take it again. If others bought it
    meanwhile, the counter stops at zero and staff see why (the order is theirs to fulfil anyway)."""
    for line in order.lines.filter(delivery_mode=Product.DeliveryMode.MANUAL).select_related("variant"):
        if line.variant.manual_stock is None:
            continue
        if not _manual_stock_move(line.variant_id, by=-line.quantity):
            _manual_stock_move(line.variant_id, to=0)
            _event(order, order.status, message=f"paid late: manual stock of {line.sku} ran out meanwhile")


def _lines_release(order: Order) -> None:
    """Give an unpaid order's stock back: reserved codes and counted manual stock."""
    for line in order.lines.select_related("variant"):
        cards_release_for_line(line_id=line.pk)
        if line.delivery_mode == Product.DeliveryMode.MANUAL and line.variant.manual_stock is not None:
            _manual_stock_move(line.variant_id, by=line.quantity)


def _deliver(order: Order, *, actor=None) -> None:
    """Assign codes to every automatic line; route the rest to staff or to the stock queue."""
    lines = list(order.lines.select_related("variant").order_by("pk"))
    short, manual, upstream = False, False, False
    for line in lines:
        remaining = line.quantity - line.delivered_quantity
        if remaining <= 0:
            continue
        if line.delivery_mode == Product.DeliveryMode.MANUAL:
            manual = True
            continue
        assignments = cards_assign(line=line, quantity=remaining)
        if assignments:
            line.delivered_quantity += len(assignments)
            line.save(update_fields=["delivered_quantity"])
            _book_cost(order, line, assignments)
        if line.delivered_quantity < line.quantity:
            if line.delivery_mode == Product.DeliveryMode.UPSTREAM:
                upstream = True
            else:
                short = True
    if upstream and not short:
        # Bought from Site A by a task, after this transaction commits: no network I/O in here.
        if order.status != S.AWAITING_UPSTREAM:
            _transition(order, S.AWAITING_UPSTREAM, actor=actor, message="buying the codes from Site A")
        transaction.on_commit(lambda: _buy_upstream(order.pk))
    elif short:
        _transition(order, S.AWAITING_STOCK, actor=actor, message="paid, but not enough codes in stock")
        transaction.on_commit(lambda: _notify_staff(order.pk, "awaiting_stock"))
    elif manual:
        _transition(order, S.MANUAL_FULFILMENT, actor=actor, message="waiting for staff")
        transaction.on_commit(lambda: _notify_staff(order.pk, "manual_fulfilment"))
    else:
        _transition(order, S.DELIVERED, actor=actor, message="codes delivered", delivered_at=timezone.now())
        if order.source == Order.Source.STOREFRONT:
            transaction.on_commit(lambda: _send_delivery_email(order.pk))


def _book_cost(order: Order, line: OrderLine, assignments) -> None:
    posting = _cost_posting(order, line, assignments)
    if posting is not None:
        ledger_post_many([posting])


def _cost_posting(order: Order, line: OrderLine, assignments) -> Posting | None:
    single = sum((a.unit_cost for a in assignments if not a.reusable), Decimal("0"))
    shared = sum((a.unit_cost for a in assignments if a.reusable), Decimal("0"))
    dims = {"order_id": order.pk, "product_id": line.product_id_snapshot, "variant_id": line.variant_id}
    lines = []
    if single + shared:
        lines.append(Line("cost_of_goods", single + shared, dims))
    if single:
        lines.append(Line("inventory", -single, dims))
    if shared:
        lines.append(Line("supplier_payable", -shared, dims))
    if not lines:
        return None
    return Posting(
        kind="order_cost",
        idempotency_key=f"order-cost:{line.pk}:{line.delivered_quantity}",
        reference=order.number,
        memo=f"{len(assignments)} × {line.sku}",
        lines=lines,
    )


def _buy_upstream(order_id: int) -> None:
    from branch_api.upstream.tasks import upstream_fulfil_task

    upstream_fulfil_task.delay(order_id)


def _send_delivery_email(order_id: int) -> None:
    from orders.tasks import order_delivery_email_task

    order_delivery_email_task.delay(order_id)


def _notify_staff(order_id: int, reason: str) -> None:
    from orders.tasks import order_staff_alert_task

    order_staff_alert_task.delay(order_id, reason)


@transaction.atomic
def order_retry_delivery(*, order_id: int, actor=None) -> Order:
    """Try again to deliver an order waiting for stock or for Site A (after an import or an upstream
    purchase, or by staff)."""
    order = Order.objects.select_for_update().get(pk=order_id)
    if order.status not in (S.AWAITING_STOCK, S.AWAITING_UPSTREAM):
        raise OrderStateError()
    _deliver(order, actor=actor)
    return order


@transaction.atomic
def order_expire(*, order_id: int) -> bool:
    """Expire an unpaid order past its deadline and release its reservations. Idempotent."""
    order = Order.objects.select_for_update(skip_locked=True).filter(pk=order_id).first()
    if order is None or order.status != S.PENDING_PAYMENT or order.expires_at > timezone.now():
        return False
    _lines_release(order)
    _transition(order, S.EXPIRED, message="payment not received in time")
    return True


def orders_expire_due(*, limit: int = 500) -> int:
    """Expire every overdue unpaid order (the periodic task's body)."""
    due = Order.objects.filter(status=S.PENDING_PAYMENT, expires_at__lte=timezone.now()).order_by("expires_at")
    return sum(order_expire(order_id=pk) for pk in due.values_list("pk", flat=True)[:limit])


@transaction.atomic
def order_cancel(*, order_id: int, actor=None, reason: str = "") -> Order:
    order = Order.objects.select_for_update().get(pk=order_id)
    if order.status != S.PENDING_PAYMENT:
        raise OrderStateError("Only unpaid orders can be cancelled.")
    _lines_release(order)
    _transition(order, S.CANCELLED, actor=actor, message=reason or "cancelled")
    return order


@transaction.atomic
def order_fulfil_manually(*, order_id: int, actor, codes: str = "", note: str = "") -> Order:
    """Staff delivers the open lines of a paid order: pasted codes (one per line of text, handed out to
    the open order lines in order, as many as each still needs) and/or a note; then the customer is
    told. Works for manual goods and for automatic lines stuck waiting for stock."""
    from core.crypto import encrypt

    order = Order.objects.select_for_update().get(pk=order_id)
    if order.status not in (S.MANUAL_FULFILMENT, S.AWAITING_STOCK, S.AWAITING_UPSTREAM):
        raise OrderStateError("Only paid orders waiting for fulfilment can be fulfilled.")
    pasted = [code.strip() for code in codes.splitlines() if code.strip()]
    if not pasted and not note.strip():
        raise CheckoutInputMissing("Paste the codes or write what was done.", field="codes")
    for line in order.lines.order_by("pk"):
        remaining = line.quantity - line.delivered_quantity
        if remaining <= 0:
            continue
        mine, pasted = pasted[:remaining], pasted[remaining:]
        ManualDelivery.objects.create(
            order_line=line,
            staff=actor if getattr(actor, "is_authenticated", False) else None,
            note=note[:255],
            content_encrypted=encrypt("\n".join(mine), aad=f"manual|{line.pk}") if mine else "",
        )
        line.delivered_quantity = line.quantity
        line.fulfilment_note = note
        line.save(update_fields=["delivered_quantity", "fulfilment_note"])
        cost = line.unit_cost * remaining  # units already delivered from the vault were booked then
        if cost:
            dims = {"order_id": order.pk, "product_id": line.product_id_snapshot, "variant_id": line.variant_id}
            ledger_post(
                kind="order_cost",
                idempotency_key=f"order-cost:{line.pk}:manual",
                reference=order.number,
                lines=[Line("cost_of_goods", cost, dims), Line("supplier_payable", -cost, dims)],
            )
    _transition(order, S.DELIVERED, actor=actor, message="fulfilled by staff", delivered_at=timezone.now())
    transaction.on_commit(lambda: _send_delivery_email(order.pk))
    return order


def orders_retry_awaiting_stock(*, variant_id: int) -> int:
    """After new codes arrive: deliver the paid orders that were waiting for this variant, oldest first."""
    waiting = (
        Order.objects.filter(status=S.AWAITING_STOCK, lines__variant_id=variant_id)
        .order_by("paid_at")
        .values_list("pk", flat=True)
        .distinct()
    )
    delivered = 0
    for order_id in list(waiting):
        try:
            order = order_retry_delivery(order_id=order_id)
        except OrderStateError:
            continue  # someone else handled it meanwhile
        delivered += order.status == S.DELIVERED
    return delivered


REFUNDABLE = (
    S.PAID,
    S.DELIVERED,
    S.AWAITING_STOCK,
    S.MANUAL_FULFILMENT,
    S.AWAITING_UPSTREAM,
    S.PARTIALLY_REFUNDED,
)


def order_refund_record(*, order: Order, refunded_total: Decimal, actor=None, message: str = "") -> Order:
    """Move a paid order to partially refunded / refunded after a refund settled. The caller holds
    the order's row lock (``payments.refunds``) and has booked the money.

    Delivered codes stay with the customer and are flagged ``refunded_at`` (never back to stock); a
    refund of an order still waiting for fulfilment closes it: codes still reserved for it and
    counted manual stock of undelivered units go back.
    """
    if order.status not in REFUNDABLE:
        raise OrderStateError()
    now = timezone.now()
    from cardvault.models import CardAssignment

    CardAssignment.objects.filter(order_line__order=order, refunded_at__isnull=True).update(refunded_at=now)
    if order.status != S.DELIVERED and order.status != S.PARTIALLY_REFUNDED:
        for line in order.lines.select_related("variant"):
            cards_release_for_line(line_id=line.pk)
            undelivered = line.quantity - line.delivered_quantity
            manual = line.delivery_mode == Product.DeliveryMode.MANUAL and line.variant.manual_stock is not None
            if manual and undelivered > 0:
                _manual_stock_move(line.variant_id, by=undelivered)
    to_status = S.REFUNDED if refunded_total >= order.total else S.PARTIALLY_REFUNDED
    _transition(order, to_status, actor=actor, message=message)
    return order


def order_refund_reversed(*, order: Order, refunded_total: Decimal, message: str = "") -> Order:
    """Move a refunded order back after the gateway failed a refund that had been booked as made.
    The caller holds the order's row lock and has booked the money back.

    With refunds left, the order is partially refunded; with none, a delivered order is delivered
    again (its codes no longer flagged refunded), any other stays closed as partially refunded for
    staff to look at (its reservations were already given back).
    """
    if order.status not in (S.REFUNDED, S.PARTIALLY_REFUNDED):
        raise OrderStateError()
    if refunded_total <= 0 and order.delivered_at is not None:
        from cardvault.models import CardAssignment

        CardAssignment.objects.filter(order_line__order=order).update(refunded_at=None)
        to_status = S.DELIVERED
    else:
        to_status = S.REFUNDED if refunded_total >= order.total else S.PARTIALLY_REFUNDED
    _transition(order, to_status, message=message)
    return order
