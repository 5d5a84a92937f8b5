"""Ledger invariants after a randomized run.

With a fixed seed, a few hundred mixed operations run on Site A (``public``) and a branch (``alpha``),
committed for real (``live_db``): code imports (with duplicates and zero-cost batches), voids,
storefront orders of one or two lines (single-use, reusable and manual goods, and on alpha the copies
of Site A products) that are paid, expired, cancelled or paid late after expiry, staff fulfilment,
redelivery after restocking, top-ups of alpha's balance at Site A, purchases by alpha through the
branch API (the service and the signed HTTP API, with wrong totals and reused references), and
alpha's purchases from Site A for its customers' orders (``upstream_fulfil`` against Site A served
in-process), with Site A changing its prices and alpha syncing its catalog now and then.

Staff also refund paid orders now and then (all or part, to the sandbox or recorded as done outside).

Then, for each schema: every journal transaction balances, every cached balance equals its entries,
no single-use code is assigned twice, sold codes match assignments exactly (reusable codes: uses),
no account that may not go negative is below zero on its natural side, inventory equals the cost of
the codes still in stock, revenue equals what paid orders sold, refunds never exceed what was paid, and
delivered lines hold what they delivered. Across the two schemas: alpha's balance at Site A is its
top-ups minus its purchases, and each purchase alpha made for a customer is exactly one sale at Site
A, of the same codes.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db.models import Count, Exists, F, OuterRef, Sum
from django.utils import timezone
from django_tenants.utils import schema_context

from branch_api.provider.errors import ApiError
from branch_api.provider.models import BranchPurchase
from branch_api.provider.services import (
    ApiCaller,
    PurchaseItem,
    branch_balance_account,
    branch_purchase,
    branch_top_up,
    credential_issue,
    terms_ensure,
)
from branch_api.provider.tests.conftest import SignedClient
from branch_api.upstream import client as upstream_client
from branch_api.upstream.models import UpstreamPurchase, UpstreamSelection
from branch_api.upstream.services import branch_markup_set, selection_add, sync_full, sync_incremental, upstream_fulfil
from branch_api.upstream.tasks import upstream_fulfil_task
from branch_api.upstream.tests.conftest import SiteATransport, _branch_reset
from cardvault.models import Card, CardAssignment
from cardvault.services import cards_reveal, cards_void, codes_parse_text, import_commit
from catalog.models import Product, Variant
from catalog.pricing import money
from core.errors import DomainError
from ledger.models import Account, Entry, Transaction
from ledger.services import ledger_check
from orders.models import ManualDelivery, Order, OrderLine
from orders.services import (
    REFUNDABLE,
    CartItem,
    order_cancel,
    order_expire,
    order_fulfil_manually,
    order_place,
    orders_retry_awaiting_stock,
)
from payments.errors import RefundRefused
from payments.models import Refund
from payments.providers.sandbox import SandboxProvider
from payments.refunds import order_refundable_amount, refund_create
from payments.services import payment_callback_handle, payment_start
from tenants.models import Branch
from tests.commerce import product_with_codes

D = Decimal
S = Order.Status
SEED = 20240611
OPERATIONS = 400
SCHEMAS = ("public", "alpha")
COSTS = [D("0"), D("1.50"), D("4.00"), D("7.25"), D("10.00")]


class NoQueue:
    """Stands in for ``upstream_fulfil_task.delay``: the run calls ``upstream_fulfil`` itself."""

    def __call__(self, *args, **kwargs):
        return None


@pytest.fixture
def site_a_in_process(live_db, monkeypatch):
    """Alpha reaches Site A in-process (real signatures, middleware, idempotency); data is committed."""
    transport = SiteATransport()
    monkeypatch.setattr(upstream_client, "DEFAULT_TRANSPORT", transport)
    monkeypatch.setattr(upstream_fulfil_task, "delay", NoQueue())
    _branch_reset()
    yield transport
    _branch_reset()


class Run:
    """The randomized run: what exists, and one method per kind of operation."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.alpha = Branch.objects.get(slug="alpha")
        self.code_seq = 0
        self.ref_seq = 0
        self.top_ups = D("0")
        self.done = Counter()
        # schema -> [(variant, kind)] with kind in single / reusable / manual / upstream
        self.goods: dict[str, list[tuple[Variant, str]]] = {"public": [], "alpha": []}
        self.for_alpha: list[Variant] = []  # Site A variants visible to alpha
        self.base_price: dict[int, Decimal] = {}
        self.attempts: dict[tuple[str, int], object] = {}  # a payment page opened before expiry
        self.api_references: list[str] = []

    # --- Setup ------------------------------------------------------------------------------------

    def setup(self) -> None:
        for schema in SCHEMAS:
            with schema_context(schema):
                goods = self.goods[schema]
                for cost, price in (("4.00", "6.00"), ("7.25", "10.00")):
                    goods.append((product_with_codes(codes=4, cost=cost, price=price), "single"))
                goods.append(
                    (product_with_codes(codes=2, cost="0.50", price="3.00", reusable=True, max_uses=3), "reusable")
                )
                manual = product_with_codes(
                    codes=0, cost="2.00", price="5.00", delivery_mode=Product.DeliveryMode.MANUAL
                )
                if schema == "public":
                    Variant.objects.filter(pk=manual.pk).update(manual_stock=12)
                goods.append((manual, "manual"))
        with schema_context("public"):
            terms = terms_ensure(self.alpha)
            for cost, price in (("6.00", "8.00"), ("8.00", "10.00")):
                variant = product_with_codes(codes=5, cost=cost, price=price)
                terms.visible_products.add(variant.product)
                self.for_alpha.append(variant)
                self.goods["public"].append((variant, "single"))  # Site A sells them in its own shop too
                self.base_price[variant.pk] = variant.price
            issued = credential_issue(branch=self.alpha, label="randomized run")
            self.caller = ApiCaller(branch=self.alpha, credential=issued.credential, terms=terms)
            self.signed = SignedClient(issued.api_key, issued.signing_secret)
        self.top_up(D("40.00"))
        with schema_context("alpha"):
            for remote in self.for_alpha:
                selection_add(kind=UpstreamSelection.Kind.PRODUCT, remote_id=remote.product_id)
            branch_markup_set(percent=D("50"))
            sync_full()
            for remote in self.for_alpha:
                self.goods["alpha"].append((Variant.objects.get(upstream_id=remote.pk), "upstream"))

    # --- Helpers ----------------------------------------------------------------------------------

    def new_codes(self, schema: str, count: int) -> list[str]:
        codes = []
        for _ in range(count):
            self.code_seq += 1
            codes.append(f"RND-{schema.upper()}-{self.code_seq:06d}-{self.rng.randrange(16**6):06X}")
        return codes

    def pick(self, items):
        items = list(items)
        return self.rng.choice(items) if items else None

    def order_with_status(self, *statuses) -> int | None:
        return self.pick(Order.objects.filter(status__in=statuses).order_by("pk").values_list("pk", flat=True))

    def top_up(self, amount: Decimal) -> None:
        self.ref_seq += 1
        with schema_context("public"):
            branch_top_up(
                branch=self.alpha,
                amount=amount,
                reference=f"rnd-{self.ref_seq}",
                idempotency_key=f"rnd-top-{self.ref_seq}",
            )
        self.top_ups += amount

    def _pay_attempt(self, attempt) -> tuple[bool, str]:
        return payment_callback_handle(provider_code="sandbox", data=SandboxProvider().notification(attempt=attempt))

    # --- Operations (each runs in the current schema unless it says otherwise) -----------------------

    def op_import(self, schema: str) -> None:
        variant, kind = self.pick((v, k) for v, k in self.goods[schema] if k in ("single", "reusable"))
        codes = self.new_codes(schema, self.rng.randint(1, 6))
        existing = list(Card.objects.filter(variant=variant).order_by("pk").values_list("pk", flat=True)[:50])
        text = "\n".join(codes)
        if existing and self.rng.random() < 0.3:
            # A code already in the vault (sold or not) comes again: skipped as a duplicate, not re-booked.
            card = Card.objects.get(pk=self.rng.choice(existing))
            text += "\n" + cards_reveal(cards=[card], channel="admin")[0].code
        reusable = kind == "reusable"
        batch = import_commit(
            variant=variant,
            parsed=codes_parse_text(text),
            unit_cost=self.rng.choice(COSTS) if not reusable else D("0.50"),
            source="paste",
            reusable=reusable,
            max_uses=3 if reusable else None,
        )
        assert batch.imported == len(codes)
        self.done["import"] += 1

    def op_place(self, schema: str) -> None:
        lines = self.rng.choice([1, 1, 1, 2])
        chosen = self.rng.sample(self.goods[schema], k=lines)
        items = [CartItem(variant_id=v.pk, quantity=self.rng.randint(1, 3)) for v, _ in chosen]
        try:
            order = order_place(items=items, email="rnd@example.test", lookup_password="lookup-pass")
        except DomainError:
            self.done["place refused"] += 1
            return
        if self.rng.random() < 0.4:  # the customer opened the payment page (it may be paid late)
            self.attempts[(schema, order.pk)] = payment_start(order=order, provider_code="sandbox")[0]
        self.done["place"] += 1

    def op_pay(self, schema: str) -> None:
        order_id = self.order_with_status(S.PENDING_PAYMENT)
        if order_id is None:
            return
        attempt = self.attempts.pop((schema, order_id), None)
        if attempt is None:
            attempt = payment_start(order=Order.objects.get(pk=order_id), provider_code="sandbox")[0]
        assert self._pay_attempt(attempt) == (True, "ok")
        if self.rng.random() < 0.1:  # the gateway repeats its notification
            assert self._pay_attempt(attempt) == (True, "ok")
        self.done["pay"] += 1

    def op_expire(self, schema: str) -> None:
        order_id = self.order_with_status(S.PENDING_PAYMENT)
        if order_id is None:
            return
        Order.objects.filter(pk=order_id).update(expires_at=timezone.now() - timedelta(seconds=1))
        assert order_expire(order_id=order_id) is True
        self.done["expire"] += 1

    def op_cancel(self, schema: str) -> None:
        order_id = self.order_with_status(S.PENDING_PAYMENT)
        if order_id is None:
            return
        order_cancel(order_id=order_id, reason="randomized run")
        self.done["cancel"] += 1

    def op_pay_late(self, schema: str) -> None:
        """A payment page opened in time, paid after the order expired or was cancelled."""
        candidates = sorted(
            pk
            for (s, pk) in self.attempts
            if s == schema and Order.objects.filter(pk=pk, status__in=[S.EXPIRED, S.CANCELLED]).exists()
        )
        order_id = self.pick(candidates)
        if order_id is None:
            return
        attempt = self.attempts.pop((schema, order_id))
        assert self._pay_attempt(attempt) == (True, "ok")
        self.done["pay late"] += 1

    def op_fulfil_manually(self, schema: str) -> None:
        order_id = self.order_with_status(S.MANUAL_FULFILMENT, S.AWAITING_STOCK)
        if order_id is None:
            return
        order = Order.objects.get(pk=order_id)
        open_units = sum(line.quantity - line.delivered_quantity for line in order.lines.all())
        codes = "\n".join(self.new_codes(f"{schema}-manual", open_units)) if self.rng.random() < 0.7 else ""
        order_fulfil_manually(order_id=order_id, actor=None, codes=codes, note="done by hand")
        self.done["fulfil manually"] += 1

    def op_refund(self, schema: str) -> None:
        """Staff refund all or part of what is left of a paid storefront order (not one whose codes are
        still being bought from Site A); now and then they ask for a cent too much."""
        open_upstream = OrderLine.objects.filter(
            order=OuterRef("pk"), delivery_mode=Product.DeliveryMode.UPSTREAM, delivered_quantity__lt=F("quantity")
        )
        order_id = self.pick(
            Order.objects.filter(source=Order.Source.STOREFRONT, status__in=[*REFUNDABLE])
            .exclude(status__in=[S.PAID, S.AWAITING_UPSTREAM])
            .filter(~Exists(open_upstream))
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        if order_id is None:
            return
        left = order_refundable_amount(Order.objects.get(pk=order_id))
        amount = left if self.rng.random() < 0.5 else max(money(left * D(self.rng.choice(["0.25", "0.5"]))), D("0.01"))
        destination = self.rng.choice([Refund.Destination.CHANNEL, Refund.Destination.OUTSIDE])
        if self.rng.random() < 0.15:
            too_much = left + D("0.01")
            with pytest.raises(RefundRefused):
                refund_create(order_id=order_id, amount=too_much, destination=destination, staff=None, reason="rnd")
            self.done["refund refused"] += 1
            return
        refund_create(order_id=order_id, amount=amount, destination=destination, staff=None, reason="randomized run")
        self.done["refund"] += 1

    def op_void(self, schema: str) -> None:
        available = list(Card.objects.filter(status=Card.Status.AVAILABLE).order_by("pk").values_list("pk", flat=True))
        if not available:
            return
        picked = self.rng.sample(available, k=min(len(available), self.rng.randint(1, 3)))
        assert cards_void(card_ids=picked, reason="randomized run") == len(picked)
        self.done["void"] += 1

    def op_retry_stock(self, schema: str) -> None:
        variant, _ = self.pick(self.goods[schema])
        orders_retry_awaiting_stock(variant_id=variant.pk)
        self.done["retry stock"] += 1

    def op_top_up(self) -> None:
        self.top_up(self.rng.choice([D("5.00"), D("12.50"), D("30.00"), D("50.00")]))
        self.done["top up"] += 1

    def _api_items(self) -> tuple[str, list[PurchaseItem], Decimal]:
        variant = self.rng.choice(self.for_alpha)
        quantity = self.rng.randint(1, 3)
        variant.refresh_from_db(fields=["price"])
        self.ref_seq += 1
        return f"api-{self.ref_seq}", [PurchaseItem(variant_id=variant.pk, quantity=quantity)], variant.price * quantity

    def op_api_purchase(self) -> None:
        """Alpha buys through the branch API's service (as its view calls it)."""
        with schema_context("public"):
            if self.api_references and self.rng.random() < 0.15:
                reference = self.rng.choice(self.api_references)
                before = BranchPurchase.objects.get(branch=self.alpha, reference=reference)
                purchase, created = branch_purchase(
                    caller=self.caller, reference=reference, items=[], expected_total=None
                )
                assert (purchase.pk, created) == (before.pk, False)  # the original, not a second sale
                self.done["api repeat"] += 1
                return
            reference, items, total = self._api_items()
            expected = self.rng.choice([total, total, None, total + D("1.00")])
            try:
                branch_purchase(caller=self.caller, reference=reference, items=items, expected_total=expected)
            except ApiError as exc:
                assert exc.code in {"insufficient_balance", "out_of_stock", "expected_total_mismatch"}, exc.code
                self.done[f"api refused {exc.code}"] += 1
                return
            assert expected in (total, None)
            self.api_references.append(reference)
            self.done["api purchase"] += 1

    def op_signed_purchase(self) -> None:
        """Alpha buys through the signed HTTP API (Django's test client: Site A's full request cycle)."""
        with schema_context("public"):
            reference, items, total = self._api_items()
        payload = {
            "reference": reference,
            "items": [{"variant_id": i.variant_id, "quantity": i.quantity} for i in items],
            "expected_total": str(total),
        }
        response = self.signed.post("/api/branch/v1/orders", payload, idempotency_key=f"rnd-key-{reference}")
        assert response.status_code in (201, 402, 409), response.content
        if response.status_code == 201:
            body = json.loads(response.content)["order"]
            assert body["status"] == "delivered" and D(body["total"]) == total
            assert sum(len(item["codes"]) for item in body["items"]) == items[0].quantity
            self.api_references.append(reference)
            self.done["signed purchase"] += 1
        else:
            self.done[f"signed refused {response.status_code}"] += 1

    def op_upstream_fulfil(self) -> None:
        with schema_context("alpha"):
            order_id = self.order_with_status(S.AWAITING_UPSTREAM)
            if order_id is None:
                return
            outcome = upstream_fulfil(order_id=order_id)
        self.done[f"upstream {outcome}"] += 1

    def op_site_a_price(self) -> None:
        """Site A moves a price alpha buys at (within alpha's margin of its first price)."""
        variant = self.rng.choice(self.for_alpha)
        base = self.base_price[variant.pk]
        price = (base * D(self.rng.choice(["0.9", "1", "1.1", "1.2"]))).quantize(D("0.01"))
        with schema_context("public"):
            Variant.objects.filter(pk=variant.pk).update(price=price, updated=timezone.now())
        self.done["site a price"] += 1

    def op_sync(self) -> None:
        with schema_context("alpha"):
            sync_incremental()
        self.done["sync"] += 1

    def op_site_a_restock(self) -> None:
        with schema_context("public"):
            variant = self.rng.choice(self.for_alpha)
            codes = self.new_codes("public", self.rng.randint(2, 5))
            import_commit(
                variant=variant, parsed=codes_parse_text("\n".join(codes)), unit_cost=D("6.00"), source="paste"
            )
        self.done["site a restock"] += 1

    # --- The run ------------------------------------------------------------------------------------

    SCHEMA_OPS = {
        "import": 9,
        "place": 28,
        "pay": 13,
        "expire": 6,
        "cancel": 5,
        "pay_late": 5,
        "fulfil_manually": 4,
        "void": 3,
        "retry_stock": 3,
        "refund": 3,
    }
    SITE_OPS = {
        "top_up": 4,
        "api_purchase": 6,
        "signed_purchase": 2,
        "upstream_fulfil": 8,
        "site_a_price": 2,
        "sync": 3,
        "site_a_restock": 4,
    }

    def run(self, operations: int) -> None:
        names = [*(("schema", n) for n in self.SCHEMA_OPS), *(("site", n) for n in self.SITE_OPS)]
        weights = [*self.SCHEMA_OPS.values(), *self.SITE_OPS.values()]
        for _ in range(operations):
            scope, name = self.rng.choices(names, weights=weights)[0]
            if scope == "schema":
                schema = self.rng.choice(SCHEMAS)
                with schema_context(schema):
                    getattr(self, f"op_{name}")(schema)
                self.done[f"{schema}:{name}"] += 1
            else:
                getattr(self, f"op_{name}")()

    def drain(self) -> None:
        """Enough balance and stock at Site A, then every order waiting for Site A is retried."""
        self.top_up(D("500.00"))
        with schema_context("public"):
            for variant in self.for_alpha:
                codes = self.new_codes("public", 12)
                import_commit(
                    variant=variant, parsed=codes_parse_text("\n".join(codes)), unit_cost=D("6.00"), source="paste"
                )
        for _ in range(2):
            with schema_context("alpha"):
                waiting = list(
                    Order.objects.filter(status=S.AWAITING_UPSTREAM).order_by("pk").values_list("pk", flat=True)
                )
                for order_id in waiting:
                    upstream_fulfil(order_id=order_id)
        with schema_context("alpha"):
            # Site A's prices stayed within alpha's margin, so with balance and stock nothing is left waiting.
            left = list(
                UpstreamPurchase.objects.exclude(status=UpstreamPurchase.Status.DONE).values_list(
                    "reference", "last_error_code"
                )
            )
            assert left == [] and not Order.objects.filter(status=S.AWAITING_UPSTREAM).exists(), left


# --- Invariants ---------------------------------------------------------------------------------------


def _schema_invariants(schema: str) -> None:
    with schema_context(schema):
        # Every journal transaction balances and has entries; every cached balance equals its entries.
        unbalanced = list(Entry.objects.values("transaction_id").annotate(total=Sum("amount")).exclude(total=0))
        assert unbalanced == [], f"{schema}: unbalanced transactions {unbalanced}"
        assert not Transaction.objects.filter(entries__isnull=True).exists(), f"{schema}: empty transactions"
        assert ledger_check() == [], f"{schema}: {ledger_check()}"

        # No account that may not go negative is below zero on its natural side.
        negative = [
            (a.code, a.natural_balance) for a in Account.objects.filter(may_go_negative=False) if a.natural_balance < 0
        ]
        assert negative == [], f"{schema}: {negative}"

        # A single-use code is assigned at most once; sold single-use codes are exactly the assigned ones.
        twice = list(
            CardAssignment.objects.filter(reusable=False).values("card_id").annotate(n=Count("id")).filter(n__gt=1)
        )
        assert twice == [], f"{schema}: codes assigned twice {twice}"
        assert not CardAssignment.objects.exclude(reusable=F("card__reusable")).exists()
        sold = set(Card.objects.filter(reusable=False, status=Card.Status.SOLD).values_list("pk", flat=True))
        assigned = set(CardAssignment.objects.filter(reusable=False).values_list("card_id", flat=True))
        assert sold == assigned, (
            f"{schema}: sold without assignment {sold - assigned}, assigned unsold {assigned - sold}"
        )
        assert not Card.objects.filter(reusable=False, status=Card.Status.SOLD).exclude(use_count=1).exists()
        # Reusable codes: one use per assignment, sold out exactly at their limit.
        uses = dict(
            CardAssignment.objects.filter(reusable=True)
            .values("card_id")
            .annotate(n=Count("id"))
            .values_list("card_id", "n")
        )
        for card in Card.objects.filter(reusable=True):
            assert card.use_count == uses.get(card.pk, 0), f"{schema}: reusable {card.pk} uses {card.use_count}"
            if card.status == Card.Status.SOLD:
                assert card.use_count == card.max_uses
            elif card.status == Card.Status.AVAILABLE:
                assert card.max_uses is None or card.use_count < card.max_uses

        # Codes are held only for orders that may still take them.
        holders = set(
            Card.objects.filter(status=Card.Status.RESERVED).values_list("reserved_for__order__status", flat=True)
        )
        assert holders <= {S.PENDING_PAYMENT, S.AWAITING_UPSTREAM}, f"{schema}: codes reserved for {holders}"

        # Inventory is the cost of the single-use codes still in stock.
        in_stock = Card.objects.filter(reusable=False, status__in=[Card.Status.AVAILABLE, Card.Status.RESERVED])
        stock_cost = in_stock.aggregate(total=Sum("batch__unit_cost"))["total"] or D("0")
        inventory = Account.objects.filter(code="inventory").first()
        assert (inventory.balance if inventory else D("0")) == stock_cost, f"{schema}: inventory vs codes in stock"

        # Revenue is what the paid orders sold; unpaid orders booked nothing and delivered nothing.
        paid_lines = OrderLine.objects.filter(order__paid_at__isnull=False)
        sold_total = sum((line.line_total for line in paid_lines), D("0"))
        revenue = Account.objects.filter(code="sales_revenue").first()
        assert (revenue.natural_balance if revenue else D("0")) == sold_total, f"{schema}: revenue vs paid orders"
        unpaid = Order.objects.filter(paid_at__isnull=True)
        assert not Entry.objects.filter(order_id__in=unpaid.values("pk")).exists()
        assert not CardAssignment.objects.filter(order_line__order__in=unpaid).exists()
        assert set(unpaid.values_list("status", flat=True)) <= {S.PENDING_PAYMENT, S.EXPIRED, S.CANCELLED}

        # Refunds never exceed what was paid, the order's status says how much went back, and the
        # refunds account holds exactly the refunds made.
        refunded = dict(
            Refund.objects.filter(status=Refund.Status.SUCCEEDED)
            .values("order_id")
            .annotate(total=Sum("amount"))
            .values_list("order_id", "total")
        )
        for order in Order.objects.filter(pk__in=refunded):
            assert refunded[order.pk] <= order.total, f"{schema}: order {order.number} over-refunded"
            expected = S.REFUNDED if refunded[order.pk] == order.total else S.PARTIALLY_REFUNDED
            assert order.status == expected, f"{schema}: order {order.number} is {order.status}"
        assert not Order.objects.filter(status__in=[S.REFUNDED, S.PARTIALLY_REFUNDED]).exclude(pk__in=refunded).exists()
        refunds = Account.objects.filter(code="refunds").first()
        assert (refunds.balance if refunds else D("0")) == sum(refunded.values(), D("0")), f"{schema}: refunds"

        # Each line delivered what its codes (or the staff) delivered; delivered orders delivered everything.
        assignments = dict(
            CardAssignment.objects.values("order_line_id").annotate(n=Count("id")).values_list("order_line_id", "n")
        )
        by_hand = set(ManualDelivery.objects.values_list("order_line_id", flat=True))
        for line in OrderLine.objects.select_related("order"):
            delivered_codes = assignments.get(line.pk, 0)
            if line.pk in by_hand:
                assert delivered_codes <= line.delivered_quantity == line.quantity
            else:
                assert delivered_codes == line.delivered_quantity, f"{schema}: line {line.pk}"
            if line.order.status == S.DELIVERED:
                assert line.delivered_quantity == line.quantity, f"{schema}: line {line.pk} of a delivered order"


def _cross_schema_invariants(run: Run) -> None:
    with schema_context("public"):
        balance = branch_balance_account(run.alpha).natural_balance
        purchases = {p.reference: p for p in BranchPurchase.objects.filter(branch=run.alpha).select_related("order")}
        spent = sum((p.total for p in purchases.values()), D("0"))
        for purchase in purchases.values():
            assert purchase.order.status == S.DELIVERED and purchase.order.total == purchase.total
        site_a_digests = {
            ref: sorted(Card.objects.filter(assignments__order_line__order=p.order).values_list("digest", flat=True))
            for ref, p in purchases.items()
        }
    assert balance == run.top_ups - spent, (balance, run.top_ups, spent)

    with schema_context("alpha"):
        upstream = {p.reference: p for p in UpstreamPurchase.objects.select_related("order_line")}
        alpha_digests = {
            ref: sorted(Card.objects.filter(assignments__order_line=p.order_line).values_list("digest", flat=True))
            for ref, p in upstream.items()
        }
    bought_for_customers = {ref for ref in purchases if ref.startswith("alpha:")}
    done = {ref for ref, p in upstream.items() if p.status == UpstreamPurchase.Status.DONE}
    assert bought_for_customers == done, bought_for_customers ^ done
    for ref in done:
        assert purchases[ref].total == upstream[ref].expected_total, ref
        # The customer got exactly the codes Site A sold (same deployment: same digest pepper).
        assert alpha_digests[ref] == site_a_digests[ref] and len(site_a_digests[ref]) == upstream[ref].quantity, ref


def test_ledger_invariants_hold_after_a_randomized_run(site_a_in_process):
    started = time.monotonic()
    run = Run(random.Random(SEED))
    run.setup()
    run.run(OPERATIONS)
    run.drain()

    # The run did exercise what it claims to (a change to the mix must not silently test less).
    kinds = ("import", "place", "pay", "expire", "cancel", "pay late", "fulfil manually", "void", "api purchase")
    for kind in (*kinds, "refund", "refund refused"):
        assert run.done[kind] > 0, (kind, dict(run.done))
    assert run.done["upstream delivered"] > 0 and run.done["signed purchase"] > 0, dict(run.done)
    assert ("POST", "/api/branch/v1/orders") in site_a_in_process.calls  # alpha's purchases went through Site A's API
    for schema in SCHEMAS:
        with schema_context(schema):
            statuses = set(Order.objects.values_list("status", flat=True))
        assert {S.DELIVERED, S.EXPIRED, S.CANCELLED} <= statuses, (schema, statuses, dict(run.done))

    for schema in SCHEMAS:
        _schema_invariants(schema)
    _cross_schema_invariants(run)
    print(f"randomized run: {dict(sorted(run.done.items()))} in {time.monotonic() - started:.1f}s")
