"""The branch side of the branch network: the connection to Site A, what the shop sells from it,
its markup, and buying the codes of paid orders (catalog sync lives in ``sync.py``).

No function here calls Site A inside a database transaction; each purchase is made idempotent by a
request fixed before the first call (reference + Idempotency-Key), so retries never buy twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db import connection as db_connection
from django.db.models import F, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from branch_api.upstream.client import UpstreamClient
from branch_api.upstream.credentials import connection_credentials, connection_set_credentials
from branch_api.upstream.errors import (
    MarkupInvalid,
    SelectionInvalid,
    TopUpInvalid,
    UpstreamError,
    UpstreamUnavailable,
)
from branch_api.upstream.models import UpstreamConnection, UpstreamPurchase, UpstreamSelection
from branch_api.upstream.selectors import connection_get, markup_rule_get, upstream_orders_due
from branch_api.upstream.sync import SyncResult, sync_full, sync_incremental
from cardvault.crypto import code_digest
from cardvault.models import Card, ImportBatch
from cardvault.services import codes_parse_rows, import_commit
from catalog.models import Category, PriceList, PriceRule, Product, Variant
from catalog.pricing import PriceBook, money, tiers_prefetch
from orders.models import Order, OrderLine

__all__ = [
    "SyncResult",
    "branch_markup_set",
    "connection_balance",
    "connection_ping",
    "connection_save",
    "remote_catalog_page",
    "selection_add",
    "selection_remove",
    "sync_full",
    "sync_incremental",
    "upstream_fulfil",
    "upstream_retry_waiting",
]

logger = logging.getLogger(__name__)

BACKOFF_FIRST_SECONDS = 30
BACKOFF_MAX_SECONDS = 30 * 60
# Site A unreachable this many times in a row for one purchase (about 15 minutes): tell the staff.
ALERT_AFTER_FAILED_ATTEMPTS = 6
# Codes of a purchase are reserved for their line only until the same transaction assigns them.
RESERVED_FOR_PURCHASE = timedelta(days=3650)


# --- Connection -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PingResult:
    protocol: str
    branch: str
    capabilities: list[str]
    clock_skew_seconds: float  # Site A's clock minus ours (positive: Site A is ahead)


def connection_save(
    *,
    connection: UpstreamConnection,
    base_url: str,
    host_header: str = "",
    is_enabled: bool = True,
    api_key: str = "",
    signing_secret: str = "",
) -> UpstreamConnection:
    """Point the shop at a Site A. Empty ``api_key``/``signing_secret`` keep the stored ones."""
    connection.base_url = base_url.strip()
    connection.host_header = host_header.strip()
    connection.is_enabled = is_enabled
    if api_key or signing_secret:
        stored_key, stored_secret = _stored_credentials(connection)
        connection_set_credentials(
            connection, api_key=api_key.strip() or stored_key, signing_secret=signing_secret.strip() or stored_secret
        )
        connection.status = UpstreamConnection.Status.UNKNOWN
        connection.sync_cursor = ""  # another Site A, or another branch's view of it: read everything again
    connection.save()
    return connection


def _stored_credentials(connection: UpstreamConnection) -> tuple[str, str]:
    if not (connection.api_key_encrypted and connection.signing_secret_encrypted):
        return "", ""
    try:
        return connection_credentials(connection)
    except Exception:  # no longer decryptable (its key was rotated away): both must be pasted again
        return "", ""


def connection_ping() -> PingResult:
    """Call Site A's ping with the stored credentials; record status, protocol and clock skew."""
    connection = connection_get()
    sent = timezone.now()
    try:
        answer = UpstreamClient(connection).ping()
    except UpstreamError as exc:
        _connection_failed(connection, exc, what="ping")
        raise
    received = timezone.now()
    server_time = parse_datetime(str(answer.get("server_time") or ""))
    midpoint = sent + (received - sent) / 2
    skew = round((server_time - midpoint).total_seconds(), 3) if server_time else 0.0
    result = PingResult(
        protocol=str(answer.get("protocol") or ""),
        branch=str(answer.get("branch") or ""),
        capabilities=list(answer.get("capabilities") or []),
        clock_skew_seconds=skew,
    )
    UpstreamConnection.objects.filter(pk=connection.pk).update(
        status=UpstreamConnection.Status.OK,
        protocol_version=result.protocol[:8],
        clock_skew_seconds=skew,
        last_ping_at=received,
    )
    return result


def connection_top_up_start(*, amount: Decimal, return_url: str) -> str:
    """Ask Site A for a page where the owner pays ``amount`` into the shop's balance; returns its URL."""
    import secrets

    amount = Decimal(str(amount)).quantize(Decimal("0.01"))
    if not Decimal("0.01") <= amount <= Decimal("100000"):
        raise TopUpInvalid(field="amount")
    connection = connection_get()
    answer = UpstreamClient(connection).top_up_create(
        amount=amount, return_url=return_url, idempotency_key=f"top-up-{secrets.token_urlsafe(12)}"
    )
    return answer.data["pay_url"]


def connection_balance() -> Decimal:
    """The shop's prepaid balance at Site A (stored on the connection for the admin)."""
    connection = connection_get()
    try:
        answer = UpstreamClient(connection).balance()
    except UpstreamError as exc:
        _connection_failed(connection, exc, what="balance")
        raise
    balance = money(Decimal(str(answer["balance"])))
    UpstreamConnection.objects.filter(pk=connection.pk).update(
        status=UpstreamConnection.Status.OK,
        balance=balance,
        balance_currency=str(answer.get("currency") or "")[:3],
        balance_checked_at=timezone.now(),
    )
    return balance


def _connection_failed(connection: UpstreamConnection, exc: UpstreamError, *, what: str) -> None:
    UpstreamConnection.objects.filter(pk=connection.pk).update(
        status=UpstreamConnection.Status.ERROR,
        last_error=f"{what}: {exc.code}: {exc.message}"[:255],
        last_error_at=timezone.now(),
        **({"last_ping_at": timezone.now()} if what == "ping" else {}),
    )


def remote_catalog_page(*, page: int = 1, page_size: int = 50) -> dict:
    """Site A's visible catalog for the selection page: its categories and one page of products."""
    client = UpstreamClient(connection_get())
    return {"categories": client.categories(), **client.products(page=page, page_size=page_size)}


# --- Selection ------------------------------------------------------------------------------------


@transaction.atomic
def selection_add(
    *, kind: str, remote_id: int, name: str = "", local_category: Category | None = None
) -> UpstreamSelection:
    """Sell a Site A category (with every product in it, now and later) or a single product; or
    exclude a single product of a selected category (``kind=excluded``: its copy is hidden at once and
    stays hidden whatever the sync reads, until the exclusion is removed).

    Adding it again updates the name and where copies go. The next sync is a full one.
    """
    if kind not in UpstreamSelection.Kind.values or not isinstance(remote_id, int) or remote_id < 1:
        raise SelectionInvalid(field="remote_id")
    Kind = UpstreamSelection.Kind
    if kind in (Kind.PRODUCT, Kind.EXCLUDED):
        # Selecting a product and excluding it undo each other: the last choice holds.
        UpstreamSelection.objects.filter(
            kind=Kind.EXCLUDED if kind == Kind.PRODUCT else Kind.PRODUCT, remote_id=remote_id
        ).delete()
    if kind == Kind.EXCLUDED:
        local_category = None
        Product.objects.filter(upstream_id=remote_id, is_active=True).update(is_active=False, updated=timezone.now())
    selection, created = UpstreamSelection.objects.get_or_create(
        kind=kind, remote_id=remote_id, defaults={"name": name[:200], "local_category": local_category}
    )
    if not created:
        selection.name = name[:200] or selection.name
        selection.local_category = local_category
        selection.save(update_fields=["name", "local_category"])
    _full_sync_request()
    return selection


@transaction.atomic
def selection_remove(*, selection_id: int) -> bool:
    """Stop selling a selection; its copies become inactive at the next sync (a full one). Removing
    an exclusion sells the product again from the next sync on, if its category is still selected."""
    deleted, _ = UpstreamSelection.objects.filter(pk=selection_id).delete()
    if deleted:
        _full_sync_request()
    return bool(deleted)


def _full_sync_request() -> None:
    # The periodic sync (upstream_sync_task) sees the request and reads the whole catalog; the admin
    # runs it at once. An incremental pull could not find the unchanged products of a new category.
    UpstreamConnection.objects.update(full_sync_requested_at=timezone.now())


# --- Markup ---------------------------------------------------------------------------------------


@transaction.atomic
def branch_markup_set(*, percent: Decimal) -> PriceRule:
    """The shop's markup on Site A's cost: an "everything" percent rule in the storefront price list
    (created if the shop has none). More specific rules (category, product, variant) still win."""
    percent = Decimal(str(percent))
    if not Decimal("0") <= percent <= Decimal("1000"):
        raise MarkupInvalid(field="percent")
    rule = markup_rule_get()
    if rule is None:
        price_list = PriceList.objects.select_for_update().filter(is_default=True).first()
        if price_list is None:
            code = "storefront" if not PriceList.objects.filter(code="storefront").exists() else "storefront-default"
            price_list = PriceList.objects.create(name="Storefront prices", code=code, is_default=True)
        return PriceRule.objects.create(
            price_list=price_list, scope=PriceRule.Scope.ALL, mode=PriceRule.Mode.PERCENT_MARKUP, value=percent
        )
    rule.mode, rule.value = PriceRule.Mode.PERCENT_MARKUP, percent
    rule.save(update_fields=["mode", "value", "updated"])
    return rule


# --- Fulfilment -----------------------------------------------------------------------------------


class FulfilOutcome(StrEnum):
    DELIVERED = "delivered"
    WAITING = "waiting"  # still awaiting Site A; retried later
    NOTHING_TO_DO = "nothing_to_do"


def upstream_fulfil(*, order_id: int, task=None) -> str:
    """Buy the codes of a paid order's open upstream lines from Site A and deliver them.

    Per line, the request is fixed the first time (reference ``<schema>:<line id>``, its
    Idempotency-Key, quantity, expected total), so a retry after any failure gets Site A's first
    answer back instead of a second purchase. The codes of every answered line are imported into the
    vault, reserved for their line and delivered in one transaction. Site A unreachable: ``task``
    (the Celery task) retries with back-off. Refused (balance, stock, ...): the staff are e-mailed
    once and the periodic sweep retries. Returns a ``FulfilOutcome`` value.
    """
    order = Order.objects.filter(pk=order_id).first()
    if order is None or order.status != Order.Status.AWAITING_UPSTREAM:
        return FulfilOutcome.NOTHING_TO_DO
    connection = connection_get()
    lines = [
        line
        for line in order.lines.select_related("variant").order_by("pk")
        if line.delivery_mode == Product.DeliveryMode.UPSTREAM and line.delivered_quantity < line.quantity
    ]
    answered: list[tuple[UpstreamPurchase, dict]] = []
    retry_in: int | None = None
    client: UpstreamClient | None = None
    for line in lines:
        purchase = _purchase_ensure(line)
        if purchase.status == UpstreamPurchase.Status.DONE:
            continue
        if purchase.remote_variant_id == 0:
            _purchase_failed(purchase, UpstreamError("This product is not linked to Site A.", code="not_linked"))
            continue
        if not connection.is_enabled:
            _purchase_failed(purchase, UpstreamError("The connection to Site A is disabled.", code="disabled"))
            continue
        client = client or UpstreamClient(connection)
        try:
            answered.append((purchase, _purchase_send(client, purchase, line)))
        except UpstreamError as exc:
            delay = _purchase_failed(purchase, exc)
            if exc.retryable:
                retry_in = delay if retry_in is None else min(retry_in, delay)
    if answered:
        _purchases_deliver(order_id=order.pk, answered=answered)
    order.refresh_from_db(fields=["status"])
    if order.status == Order.Status.DELIVERED:
        return FulfilOutcome.DELIVERED
    if retry_in is not None and task is not None:
        raise task.retry(countdown=retry_in)
    return FulfilOutcome.WAITING


def _purchase_ensure(line: OrderLine) -> UpstreamPurchase:
    """The line's purchase request, fixed (and committed) before Site A is first called."""
    purchase = UpstreamPurchase.objects.filter(order_line=line).first()
    if purchase is not None:
        return purchase
    quantity = line.quantity - line.delivered_quantity
    try:
        return UpstreamPurchase.objects.create(
            order_line=line,
            reference=f"{db_connection.schema_name}:{line.pk}",
            remote_variant_id=line.variant.upstream_id or 0,
            quantity=quantity,
            # What the shop expected to pay when it sold the line: Site A refuses any other total.
            expected_total=money(line.unit_cost * quantity),
        )
    except IntegrityError:  # a concurrent run created it
        return UpstreamPurchase.objects.get(order_line=line)


def _purchase_send(client: UpstreamClient, purchase: UpstreamPurchase, line: OrderLine) -> dict:
    """POST the fixed request. Codes still to come (Site A's order not delivered yet) are read back
    with GET. A changed cost at Site A is accepted once if it stays within the line's price."""
    if purchase.remote_number:
        return client.order_get(reference=purchase.reference)
    try:
        return _purchase_post(client, purchase)
    except UpstreamError as exc:
        if exc.code != "expected_total_mismatch" or not _purchase_reprice(purchase, line):
            raise
    return _purchase_post(client, purchase)


def _purchase_post(client: UpstreamClient, purchase: UpstreamPurchase) -> dict:
    answer = client.order_create(
        reference=purchase.reference,
        items=[{"variant_id": purchase.remote_variant_id, "quantity": purchase.quantity}],
        expected_total=purchase.expected_total,
        idempotency_key=purchase.idempotency_key,
    )
    return answer.data


def _purchase_reprice(purchase: UpstreamPurchase, line: OrderLine) -> bool:
    """Site A's cost changed since the sale: re-read it (incremental sync) and, if buying at the new
    cost still costs no more than the customer paid, fix a new request (new revision and key; the
    reference, unique at Site A, still allows one purchase only)."""
    try:
        sync_incremental()
    except UpstreamError:
        return False
    total = money(_unit_cost(line.variant_id, purchase.quantity) * purchase.quantity)
    if total == purchase.expected_total or total > money(line.unit_price * purchase.quantity):
        return False
    UpstreamPurchase.objects.filter(pk=purchase.pk).update(expected_total=total, revision=F("revision") + 1)
    purchase.refresh_from_db(fields=["expected_total", "revision"])
    return True


def _unit_cost(variant_id: int, quantity: int) -> Decimal:
    """What Site A charges per unit for ``quantity`` of a copy, as of the last sync (its cost tiers)."""
    variant = Variant.objects.select_related("product__category").prefetch_related(tiers_prefetch()).get(pk=variant_id)
    return PriceBook(None).quote(variant, quantity=quantity).cost


def _backoff_seconds(attempts: int) -> int:
    return min(BACKOFF_FIRST_SECONDS * 2 ** max(attempts - 1, 0), BACKOFF_MAX_SECONDS)


def _purchase_failed(purchase: UpstreamPurchase, exc: UpstreamError) -> int:
    """Record a failed attempt and when to try again; alert the staff once. Returns the delay."""
    attempts = purchase.attempts + 1
    delay = _backoff_seconds(attempts)
    status = UpstreamPurchase.Status.PENDING if exc.retryable else UpstreamPurchase.Status.BLOCKED
    UpstreamPurchase.objects.filter(pk=purchase.pk).exclude(status=UpstreamPurchase.Status.DONE).update(
        attempts=F("attempts") + 1,
        # Site A keeps a refusal (402, 409 ...) under its Idempotency-Key and would replay it forever:
        # the next attempt needs a new key. Its unique reference still allows one purchase only.
        # A retryable failure keeps the key: the first request may have gone through.
        revision=F("revision") + (0 if exc.retryable else 1),
        status=status,
        last_error_code=exc.code[:48],
        last_error=exc.message[:255],
        next_attempt_at=timezone.now() + timedelta(seconds=delay),
    )
    if isinstance(exc, UpstreamUnavailable):
        UpstreamConnection.objects.update(
            status=UpstreamConnection.Status.ERROR,
            last_error=f"purchase: {exc.code}: {exc.message}"[:255],
            last_error_at=timezone.now(),
        )
    logger.warning("upstream purchase %s failed: %s (%s)", purchase.reference, exc.code, exc.message)
    if not exc.retryable or attempts >= ALERT_AFTER_FAILED_ATTEMPTS:
        _alert_once(purchase_id=purchase.pk, code=exc.code, message=exc.message)
    return delay


def _purchases_deliver(*, order_id: int, answered: list[tuple[UpstreamPurchase, dict]]) -> None:
    """In one transaction: import each answered line's codes, reserve exactly those codes for the
    line, and deliver the order (which assigns them and books their cost)."""
    from orders.services import order_retry_delivery

    alerts: list[tuple[int, str, str]] = []
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order_id)
        reserved_any = False
        for sent, answer in answered:
            purchase = (
                UpstreamPurchase.objects.select_for_update().select_related("order_line__variant").get(pk=sent.pk)
            )
            if purchase.status == UpstreamPurchase.Status.DONE:
                continue  # a concurrent run delivered it
            reserved, alert = _purchase_import(purchase, answer, reserve=order.status == Order.Status.AWAITING_UPSTREAM)
            reserved_any = reserved_any or reserved > 0
            if alert:
                alerts.append((purchase.pk, *alert))
        if reserved_any:
            order_retry_delivery(order_id=order_id)
    for purchase_id, code, message in alerts:
        _alert_once(purchase_id=purchase_id, code=code, message=message)


def _purchase_import(purchase: UpstreamPurchase, answer: dict, *, reserve: bool) -> tuple[int, tuple[str, str] | None]:
    """Store one purchase's codes in the vault and reserve them for its line. Returns how many were
    reserved, and an alert (code, message) when the staff must step in."""
    remote = answer.get("order") or {}
    line = purchase.order_line
    items = [
        item for item in remote.get("items") or [] if int(item.get("variant_id") or 0) == purchase.remote_variant_id
    ]
    codes = [c for item in items for c in item.get("codes") or []]
    pairs = [(c.get("code") or "", c.get("secret") or "") for c in codes if not c.get("reusable")]
    unit_cost = (
        money(Decimal(str(items[0]["unit_cost"]))) if items else money(purchase.expected_total / purchase.quantity)
    )
    # Rows, not text: a code may contain "|". The blank first row keeps a code that reads "code"
    # from being taken for a header.
    parsed = codes_parse_rows([("",), *pairs])
    note = f"Site A order {remote.get('number', '')} ({purchase.reference})"[:255]
    if parsed.codes:
        import_commit(
            variant=line.variant,
            parsed=parsed,
            unit_cost=unit_cost,
            source=ImportBatch.Source.UPSTREAM,
            funding_account="prepaid_upstream",
            note=note,
        )
    shared = _reusable_uses_import(
        purchase,
        [(c.get("code") or "", c.get("secret") or "") for c in codes if c.get("reusable")],
        unit_cost=unit_cost,
        note=note,
    )
    reserved = shared if reserve else 0
    if reserve and parsed.codes:
        now = timezone.now()
        # By digest: a code the vault already held (a duplicate, not re-imported) is found too.
        reserved += (
            Card.objects.filter(digest__in=[code_digest(code) for code, _ in parsed.codes], reusable=False)
            .filter(Q(status=Card.Status.AVAILABLE) | Q(status=Card.Status.RESERVED, reserved_for_id=line.pk))
            .update(
                status=Card.Status.RESERVED,
                reserved_for_id=line.pk,
                reserved_until=now + RESERVED_FOR_PURCHASE,
                status_changed_at=now,
            )
        )
    received = len(parsed.codes) + shared
    complete = remote.get("status") == Order.Status.DELIVERED or received >= purchase.quantity
    purchase.remote_number = str(remote.get("number") or "")[:32]
    purchase.codes_received = received
    purchase.codes_reserved = reserved
    alert = None
    if not complete:
        # Site A has the order but not all its codes yet: read it again later (GET, not a new order).
        purchase.status = UpstreamPurchase.Status.BLOCKED
        purchase.last_error_code = "codes_pending"
        purchase.last_error = f"Site A order {purchase.remote_number} is {remote.get('status')}: codes to come."
        purchase.attempts += 1
        purchase.next_attempt_at = timezone.now() + timedelta(seconds=_backoff_seconds(purchase.attempts))
    else:
        purchase.status = UpstreamPurchase.Status.DONE
        purchase.completed_at = timezone.now()
        purchase.last_error_code = purchase.last_error = ""
        needed = line.quantity - line.delivered_quantity
        if reserve and reserved < min(needed, purchase.quantity):
            purchase.last_error_code = "codes_unusable"
            purchase.last_error = (
                f"{purchase.quantity - reserved} code(s) from Site A were already sold or invalid in this shop's vault."
            )
            alert = (purchase.last_error_code, purchase.last_error)
    purchase.save()
    return reserved, alert


def _reusable_uses_import(
    purchase: UpstreamPurchase, pairs: list[tuple[str, str]], *, unit_cost: Decimal, note: str
) -> int:
    """Store the uses of reusable codes Site A sold for this purchase; returns how many.

    A reusable code is the same code for every buyer, so the shop's vault holds it once (it is
    deduplicated by digest) with one more allowed use per use bought: the delivery that follows in
    this transaction takes exactly that use, and no other line can sell a use the shop did not buy.
    The card points at the latest purchase's batch, so the use is booked at what it cost. The money
    left the prepaid balance at Site A: the payable the delivery books for a shared code is settled
    from it here.
    """
    from ledger.services import Line, ledger_post

    parsed = codes_parse_rows([("",), *pairs])
    if not parsed.codes:
        return 0
    variant = purchase.order_line.variant
    batch = import_commit(
        variant=variant,
        parsed=parsed,
        unit_cost=unit_cost,
        source=ImportBatch.Source.UPSTREAM,
        reusable=True,
        max_uses=0,
        note=note,
    )
    digests = [code_digest(code) for code, _ in parsed.codes]
    cards = list(
        Card.objects.select_for_update().filter(digest__in=digests, variant=variant, reusable=True).order_by("pk")
    )
    Card.objects.filter(pk__in=[c.pk for c in cards]).update(
        max_uses=F("max_uses") + 1, status=Card.Status.AVAILABLE, batch=batch, status_changed_at=timezone.now()
    )
    total = money(unit_cost * len(cards))
    if total:
        dims = {"variant_id": variant.pk, "product_id": variant.product_id}
        ledger_post(
            kind="stock_purchase",
            idempotency_key=f"upstream-reusable:{purchase.reference}",
            reference=purchase.reference[:64],
            memo=f"{len(cards)} use(s) of reusable codes of {variant.sku}",
            lines=[Line("supplier_payable", total, dims), Line("prepaid_upstream", -total, dims)],
        )
    return len(cards)


def _alert_once(*, purchase_id: int, code: str, message: str) -> bool:
    """E-mail the shop's staff that an order waits for Site A, once per purchase."""
    from core.urls import shop_base_url
    from notifications.services import email_send

    claimed = UpstreamPurchase.objects.filter(pk=purchase_id, alerted_at__isnull=True).update(alerted_at=timezone.now())
    if not claimed:
        return False
    purchase = UpstreamPurchase.objects.select_related("order_line__order").get(pk=purchase_id)
    order = purchase.order_line.order
    base = shop_base_url()
    context = {
        "order": order,
        "line": purchase.order_line,
        "purchase": purchase,
        "code": code,
        "message": message,
        "admin_url": f"{base}/admin/orders/order/{order.pk}/change/",
        "connection_url": f"{base}/admin/branch_upstream/upstreamconnection/",
    }
    staff = get_user_model().objects.filter(is_staff=True, is_active=True).exclude(email="")
    for user in staff.only("email")[:20]:
        email_send(key="upstream_blocked", to=user.email, context=context, reference=order.number)
    return True


def upstream_retry_waiting(*, limit: int = 200) -> int:
    """Queue a purchase attempt for every order waiting for Site A whose retry is due (periodic)."""
    from branch_api.upstream.tasks import upstream_fulfil_task

    due = upstream_orders_due(limit=limit)
    for order_id in due:
        upstream_fulfil_task.delay(order_id)
    return len(due)


def purchase_retry_now(*, purchase_ids: list[int]) -> int:
    """Staff: try these purchases again at the next sweep (and queue them now)."""
    from branch_api.upstream.tasks import upstream_fulfil_task

    now: datetime = timezone.now()
    purchases = UpstreamPurchase.objects.filter(pk__in=purchase_ids).exclude(status=UpstreamPurchase.Status.DONE)
    order_ids = set(purchases.values_list("order_line__order_id", flat=True))
    purchases.update(next_attempt_at=now)
    for order_id in order_ids:
        upstream_fulfil_task.delay(order_id)
    return len(order_ids)
