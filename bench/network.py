"""Branch-network benchmarks (see bench/suite.py), in a branch provisioned for the run.

6. Branch API purchases: signed ``POST /api/branch/v1/orders`` (signing headers, Idempotency-Key, balance
   debit, codes in the answer) through Site A's whole Django stack in-process, vs the raw SQL floor of one
   sale measured by pgbench (bench/sale.sql, one client) in BENCH_API_ROUNDS rounds: pgbench right before
   each batch of purchases, the ratio being the median of the rounds' (the machine's load changes by the
   minute; a floor measured minutes apart from the purchases does not compare). Afterwards the
   books are checked: every code sold once, as many codes assigned as sold, and the branch balance equal to
   the top-up minus the purchases. Below the target, one batch is profiled (cProfile). A last batch runs
   once the sync benchmark made its catalog visible to the branch too (a purchase's cost must not grow
   with the catalog).
7. Catalog sync: Site A gets BENCH_SYNC_PRODUCTS products (bulk_create); the branch selects their category
   and ``sync_full()`` copies them through the in-process transport; then BENCH_SYNC_CHANGES of them change
   on Site A (name, price, stock) and ``sync_incremental()`` pulls the change feed.

Everything made on Site A (public schema) carries the run's prefix and is deleted at the end, with the
ledger entries it caused (account balances restored); the branch is dropped. Counts scale with
BENCH_API_PURCHASES, BENCH_API_PROFILE_PURCHASES, BENCH_API_LARGE_CATALOG_PURCHASES, BENCH_SYNC_PRODUCTS,
BENCH_SYNC_VARIANTS and BENCH_SYNC_CHANGES; BENCH_PROFILE_API=1 profiles the purchases even when the
target is met, BENCH_PROFILE_FILE=<path> keeps the whole cProfile there (for pstats or snakeviz), and
BENCH_API_QUERIES=1 prints the SQL of one purchase.
``python -m bench.run network`` runs only these.
"""

from __future__ import annotations

import cProfile
import json
import os
import pstats
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
API_PURCHASES = int(os.environ.get("BENCH_API_PURCHASES", "300"))
API_PROFILE_PURCHASES = int(os.environ.get("BENCH_API_PROFILE_PURCHASES", "50"))
LARGE_CATALOG_PURCHASES = int(os.environ.get("BENCH_API_LARGE_CATALOG_PURCHASES", "100"))
PROFILE_API = os.environ.get("BENCH_PROFILE_API", "") not in ("", "0")
PROFILE_FILE = os.environ.get("BENCH_PROFILE_FILE", "")
SHOW_QUERIES = os.environ.get("BENCH_API_QUERIES", "") not in ("", "0")
SYNC_PRODUCTS = int(os.environ.get("BENCH_SYNC_PRODUCTS", "10000"))
SYNC_VARIANTS = max(int(os.environ.get("BENCH_SYNC_VARIANTS", "2")), 1)
SYNC_CHANGES = min(int(os.environ.get("BENCH_SYNC_CHANGES", "100")), SYNC_PRODUCTS)
SYNC_CATEGORIES = 20
QUERY_TIMING_PURCHASES = 20
SYNC_CODES = 50  # codes of the one variant given stock by the single import_commit
WARMUP_PURCHASES = 10
PREFIX = "bnet"
ORDERS_PATH = "/api/branch/v1/orders"
PRICE, COST = Decimal("10.00"), Decimal("8.00")

API_ROUNDS = max(int(os.environ.get("BENCH_API_ROUNDS", "5")), 1)
SQL_SALES_PER_ROUND = int(os.environ.get("BENCH_SQL_SALES", "3000")) // API_ROUNDS

API_TARGET_RATIO = 0.25
SYNC_FULL_TARGET_S = 10.0
SYNC_INCREMENTAL_TARGET_S = 1.0


def bench_all(results: dict) -> dict:
    """Both network benchmarks in a throw-away branch; ``results`` supplies the raw SQL limit if the
    purchase benchmark already measured it."""
    _leftovers_drop()
    with _sql_floor() as sql_floor, _network_branch() as (branch, tag):
        shop = _api_shop(branch, tag)
        api = bench_api_purchase(shop, sql_floor=sql_floor)
        # For reference: the purchase benchmark's own (earlier) pgbench figure, when it ran.
        api["sql_sales_per_s_purchase_benchmark"] = (results.get("purchase") or {}).get("sql_sales_per_s")
        sync = bench_sync(branch, tag)
        if LARGE_CATALOG_PURCHASES > 0:
            api["large_catalog"] = bench_api_purchase_large_catalog(shop)
        api["check"] = _purchases_check(shop)
    if not api["check"]["zero_oversell"]:
        raise RuntimeError(f"branch API purchases oversold or mis-booked: {api['check']}")
    return {"api_purchase": api, "sync": sync}


def print_results(results: dict) -> None:
    a, s = results["api_purchase"], results["sync"]
    print(
        f"branch API    {a['api_purchases_per_s']} purchases/s (signed POST orders, in-process) vs "
        f"{a['sql_sales_per_s']} sales/s raw SQL: ratio {a['api_vs_sql']} ({a['api_ms_per_purchase']} ms, "
        f"{a['queries_per_purchase']} queries, {a['commits_per_purchase']} commit(s), "
        f"{a['round_trips_per_purchase']} database round trips per purchase); target >= {API_TARGET_RATIO}: "
        f"met: {a['meets_target']}"
    )
    print(
        "branch API    rounds (pgbench sales/s, then purchases/s, ratio): "
        + "; ".join(f"{r['sql_sales_per_s']} / {r['api_purchases_per_s']} = {r['ratio']}" for r in a["rounds"])
    )
    if "large_catalog" in a:
        big = a["large_catalog"]
        print(
            f"branch API    {big['api_purchases_per_s']} purchases/s with {big['visible_products']} products visible "
            f"to the branch ({big['purchases']} purchases after the sync benchmark)"
        )
    c = a["check"]
    print(
        f"api oversell  {c['purchases']} purchases: {c['codes_sold']} codes sold, {c['codes_assigned']} assigned, "
        f"{c['codes_returned_unique']} distinct returned; balance {c['balance_after']} = top-up {c['top_up']} - "
        f"purchases {c['purchases_total']}: zero oversell: {c['zero_oversell']}"
    )
    print(
        f"branch sync   full {s['full_seconds']} s for {s['products']} products ({s['variants']} variants; "
        f"target <= {SYNC_FULL_TARGET_S} s, met: {s['full_meets_target']}); incremental {s['incremental_seconds']} s "
        f"after {s['changes']} changes (target <= {SYNC_INCREMENTAL_TARGET_S} s, met: "
        f"{s['incremental_meets_target']})"
    )


# --- The branch and the Site A data of the run -------------------------------------------------------


@contextmanager
def _network_branch() -> Iterator[tuple[object, str]]:
    """A new branch connected to Site A (provisioning installs its credentials); on the way out, the
    Site A data of the run is deleted and the branch dropped."""
    from django.db import connection

    from bench.commerce import _queued_tasks_purge
    from tenants.models import Branch
    from tenants.services import branch_provision

    tag = f"{PREFIX}{uuid.uuid4().hex[:6]}"
    result = branch_provision(slug=tag, name="Bench network", owner_email="o@bench.test", password="x")
    branch = Branch.objects.get(pk=result.branch_id)
    try:
        yield branch, tag
    finally:
        connection.set_schema_to_public()
        _site_a_purge(branch_ids=[branch.pk], slug_prefix=tag)
        branch.delete(force_drop=True)
        _queued_tasks_purge()
        _stock_keys_forget()


def _leftovers_drop() -> None:
    """Branches and Site A data of an interrupted earlier run."""
    from django.db import connection

    from tenants.models import Branch

    connection.set_schema_to_public()
    branches = list(Branch.objects.filter(slug__startswith=PREFIX))
    _site_a_purge(branch_ids=[b.pk for b in branches], slug_prefix=PREFIX)
    for branch in branches:
        branch.delete(force_drop=True)


def _site_a_purge(*, branch_ids: list[int], slug_prefix: str) -> None:
    """Delete from Site A what a run made: its categories, products, codes and orders, the branches'
    purchases and audit rows, and every journal transaction touching them (cached balances restored)."""
    from django.db import connection, transaction
    from django.db.models import F, Q, Sum

    from branch_api.provider.models import ApiAuditLog, BranchPurchase, BranchTerms
    from branch_api.provider.services import balance_account_code
    from cardvault.models import Card, CardAssignment, ImportBatch
    from catalog.models import Category, PriceRule, Product, Variant
    from ledger.models import Account, Entry
    from ledger.models import Transaction as JournalTransaction
    from orders.models import Order, OrderEvent, OrderLine

    category_ids = list(Category.objects.filter(slug__startswith=slug_prefix).values_list("pk", flat=True))
    products = Product.objects.filter(category_id__in=category_ids)
    variant_ids = list(Variant.objects.filter(product__in=products).values_list("pk", flat=True))
    order_ids = set(BranchPurchase.objects.filter(branch_id__in=branch_ids).values_list("order_id", flat=True))
    order_ids |= set(OrderLine.objects.filter(variant_id__in=variant_ids).values_list("order_id", flat=True))
    account_codes = [balance_account_code(pk) for pk in branch_ids]
    touching = Q(variant_id__in=variant_ids) | Q(order_id__in=order_ids) | Q(account__code__in=account_codes)
    txn_ids = set(Entry.objects.filter(touching).values_list("transaction_id", flat=True))
    with transaction.atomic():
        entries = Entry.objects.filter(transaction_id__in=txn_ids)
        for account_id, total in entries.values_list("account_id").annotate(total=Sum("amount")).order_by():
            Account.objects.filter(pk=account_id).update(balance=F("balance") - total)
        entries.delete()
        JournalTransaction.objects.filter(pk__in=txn_ids).delete()
        Account.objects.filter(code__in=account_codes).delete()
        sold = Q(order_line__order_id__in=order_ids) | Q(card__variant_id__in=variant_ids)
        CardAssignment.objects.filter(sold).delete()
        BranchPurchase.objects.filter(Q(branch_id__in=branch_ids) | Q(order_id__in=order_ids)).delete()
        Card.objects.filter(variant_id__in=variant_ids).delete()
        ImportBatch.objects.filter(variant_id__in=variant_ids).delete()
        # Orders and categories by SQL, not Model.delete(): the collector would also visit branch-only
        # tables (a branch's upstream purchase points at an order line, its mirror of a Site A category
        # at a category), which do not exist in the public schema.
        BranchTerms.visible_categories.through.objects.filter(category_id__in=category_ids).delete()
        PriceRule.objects.filter(category_id__in=category_ids).delete()
        with connection.cursor() as cursor:
            for model in (OrderEvent, OrderLine):
                cursor.execute(f"DELETE FROM {model._meta.db_table} WHERE order_id = ANY(%s)", [list(order_ids)])
            cursor.execute(f"DELETE FROM {Order._meta.db_table} WHERE id = ANY(%s)", [list(order_ids)])
            products.delete()
            cursor.execute(f"DELETE FROM {Category._meta.db_table} WHERE id = ANY(%s)", [category_ids])
        ApiAuditLog.objects.filter(branch_id__in=branch_ids).delete()


def _stock_keys_forget() -> None:
    """The stock.changed batch gathered in Redis (its flush task was purged with the queue)."""
    from branch_api.provider.webhooks import _stock_keys
    from core.redis import get_redis

    get_redis().delete(*_stock_keys())


def _root_category(tag: str, label: str):
    from catalog.models import Category

    category = Category(name=f"Bench {label}", slug=f"{tag}-{label}", icon="⏱️")
    category.save()  # derives the tree path
    return category


# --- 6. Branch API purchases ------------------------------------------------------------------------


class _SignedBranch:
    """Signs and sends ``POST orders`` like a branch: real headers, a fresh nonce and its own key each."""

    def __init__(self, *, api_key: str, signing_secret: str, variant_id: int, tag: str):
        from django.conf import settings
        from django.test import Client

        self.client = Client(HTTP_HOST=settings.PLATFORM_DOMAIN)
        self.api_key, self.signing_secret = api_key, signing_secret
        self.variant_id, self.tag = variant_id, tag
        self.sent = 0
        self.codes: list[str] = []
        self.totals: list[Decimal] = []

    def purchase(self) -> None:
        from branch_api.signing import sign_request

        number, self.sent = self.sent, self.sent + 1
        body = json.dumps(
            {
                "reference": f"{self.tag}-line-{number}",
                "items": [{"variant_id": self.variant_id, "quantity": 1}],
                "expected_total": str(PRICE),
            },
            separators=(",", ":"),
        ).encode()
        signed = sign_request(
            api_key=self.api_key, signing_secret=self.signing_secret, method="POST", path=ORDERS_PATH, body=body
        )
        headers = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in signed.items()}
        response = self.client.post(
            ORDERS_PATH,
            body,
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY=f"{self.tag}-key-{number:08d}",
            **headers,
        )
        if response.status_code != 201:
            raise RuntimeError(f"purchase {number} answered {response.status_code}: {response.content[:300]!r}")
        order = response.json()["order"]
        codes = [code["code"] for item in order["items"] for code in item["codes"]]
        if order["status"] != "delivered" or len(codes) != 1:
            raise RuntimeError(f"purchase {number}: status {order['status']}, {len(codes)} codes")
        self.codes.extend(codes)
        self.totals.append(Decimal(order["total"]))

    def seconds_for(self, count: int) -> float:
        started = time.perf_counter()
        for _ in range(count):
            self.purchase()
        return time.perf_counter() - started


@dataclass
class _ApiShop:
    """What the purchases run against: the branch, its buyer, the variant on Site A and the money put in."""

    branch: object
    buyer: _SignedBranch
    variant: object
    top_up: Decimal
    stocked: int


def _api_shop(branch, tag: str) -> _ApiShop:
    """A product on Site A visible to the branch with a code for every purchase planned, and a top-up
    that covers them all; the branch signs with the credentials provisioning installed in it."""
    from django.db import connection
    from django_tenants.utils import schema_context

    from branch_api.provider.services import branch_top_up, terms_ensure
    from branch_api.upstream.credentials import connection_credentials
    from branch_api.upstream.selectors import connection_get
    from catalog.models import Product, Variant

    # +1: the purchase whose queries are counted.
    planned = WARMUP_PURCHASES + API_PURCHASES + 1 + API_PROFILE_PURCHASES + WARMUP_PURCHASES + LARGE_CATALOG_PURCHASES
    planned += QUERY_TIMING_PURCHASES if SHOW_QUERIES else 0
    connection.set_schema_to_public()
    category = _root_category(tag, "api")
    product = Product.objects.create(category=category, name="Bench API card", slug=f"{tag}-api-card")
    variant = Variant.objects.create(product=product, sku=f"{tag.upper()}-API", name="$10", price=PRICE, cost=COST)
    stocked = planned + 10
    _codes_import(variant, stocked, prefix=f"{tag}-API")
    terms = terms_ensure(branch)
    terms.visible_products.add(product)
    # A branch's default limit (600/min) is a policy, not the capacity measured here.
    terms.rate_per_minute = 1_000_000
    terms.save(update_fields=["rate_per_minute", "updated"])
    top_up = PRICE * planned + Decimal("1000.00")
    branch_top_up(branch=branch, amount=top_up, reference=f"{tag}-top-up", idempotency_key=f"{tag}-top-up")
    with schema_context(branch.schema_name):
        api_key, signing_secret = connection_credentials(connection_get())
    buyer = _SignedBranch(api_key=api_key, signing_secret=signing_secret, variant_id=variant.pk, tag=tag)
    return _ApiShop(branch=branch, buyer=buyer, variant=variant, top_up=top_up, stocked=stocked)


def bench_api_purchase(shop: _ApiShop, *, sql_floor: Callable[[int], float]) -> dict:
    """API_ROUNDS rounds, each a pgbench run of the raw SQL sale right before a batch of purchases:
    on a shared machine whose load changes by the minute, only a floor and a rate measured side by
    side compare. The ratio reported is the median of the rounds' ratios."""
    from django.db import connection

    from core.sql import wire_messages

    buyer = shop.buyer
    buyer.seconds_for(WARMUP_PURCHASES)
    per_round = max(API_PURCHASES // API_ROUNDS, 1)
    rounds, seconds = [], 0.0
    for _ in range(API_ROUNDS):
        sql_rate = sql_floor(max(SQL_SALES_PER_ROUND, 1))
        took = buyer.seconds_for(per_round)
        seconds += took
        rounds.append(
            {
                "sql_sales_per_s": round(sql_rate, 1),
                "api_purchases_per_s": round(per_round / took, 1),
                "ratio": round(per_round / took / sql_rate, 3),
            }
        )
    queries: list[str] = []
    with wire_messages() as messages:
        with connection.execute_wrapper(lambda execute, sql, *args: queries.append(sql) or execute(sql, *args)):
            buyer.purchase()
    wire = _wire_counts(messages)
    if SHOW_QUERIES:
        _queries_show(buyer, queries)
    rate = per_round * API_ROUNDS / seconds
    sql_rate = statistics.median(r["sql_sales_per_s"] for r in rounds)
    ratio = statistics.median(r["ratio"] for r in rounds)
    meets = ratio >= API_TARGET_RATIO
    profile = None
    if API_PROFILE_PURCHASES > 0 and (not meets or PROFILE_API):
        profile = _purchases_profile(buyer, count=API_PROFILE_PURCHASES)
    else:
        buyer.seconds_for(API_PROFILE_PURCHASES)  # the codes and money planned for it, spent all the same
    result = {
        "purchases": per_round * API_ROUNDS,
        "rounds": rounds,
        "api_purchases_per_s": round(rate, 1),
        "api_ms_per_purchase": round(1000 / rate, 2),
        "queries_per_purchase": len(queries),
        "commits_per_purchase": wire["commits"],
        "round_trips_per_purchase": wire["round_trips"],
        "sql_sales_per_s": round(sql_rate, 1),
        "sql_source": f"bench/sale.sql by pgbench: {SQL_SALES_PER_ROUND} sales before each of {API_ROUNDS} rounds",
        "api_vs_sql": round(ratio, 3),
        "target": f"api purchases/s >= {API_TARGET_RATIO} x raw SQL sales/s",
        "meets_target": meets,
    }
    if profile is not None:
        result["profile_purchases"] = API_PROFILE_PURCHASES
        result["profile_top"] = profile
    return result


def _queries_show(buyer: _SignedBranch, queries: list[str], *, purchases: int = QUERY_TIMING_PURCHASES) -> None:
    """The statements of one purchase, each with its median wall time over ``purchases`` more purchases
    (time spent in the database driver, round trip included) and the share of a purchase it is."""
    from django.db import connection

    timings: list[list[float]] = []

    def timed(execute, sql, *args):
        started = time.perf_counter()
        try:
            return execute(sql, *args)
        finally:
            timings[-1].append(time.perf_counter() - started)

    took = []
    with connection.execute_wrapper(timed):
        for _ in range(purchases):
            timings.append([])
            started = time.perf_counter()
            buyer.purchase()
            took.append(time.perf_counter() - started)
    per_purchase = statistics.median(took) * 1000
    same_shape = [t for t in timings if len(t) == len(queries)]
    print(f"queries of one branch API purchase ({len(queries)}; {per_purchase:.2f} ms a purchase, median):")
    for position, sql in enumerate(queries):
        ms = statistics.median(t[position] for t in same_shape) * 1000 if same_shape else float("nan")
        print(f"  {ms:6.2f} ms  {' '.join(sql.split())[:160]}")
    if same_shape:
        in_sql = statistics.median(sum(t) for t in same_shape) * 1000
        print(f"  {in_sql:6.2f} ms  in these statements; the rest is Python, Redis and COMMIT")


def _wire_counts(messages: list[str]) -> dict:
    """Round trips (answers ending with ReadyForQuery) and commits: COMMITs sent, plus writes sent
    outside a transaction block (each commits on its own)."""
    round_trips = commits = 0
    idle = True
    for message in messages:
        direction, _length, kind, body = (message.split("\t", 3) + ["", "", ""])[:4]
        if direction == "B" and kind == "ReadyForQuery":
            round_trips += 1
            idle = body.strip() == "I"
        elif direction == "F" and kind in ("Query", "Parse"):
            if kind == "Parse":  # Parse "<statement name>" "<sql>" ...
                body = body.strip()[1:]
                body = body[body.index('"') + 1 :]
            statement = body.strip().lstrip('"').upper()
            if statement.startswith("COMMIT"):
                commits += 1
            elif idle and statement.startswith(("INSERT", "UPDATE", "DELETE", "WITH")):
                commits += 1
    return {"round_trips": round_trips, "commits": commits}


def bench_api_purchase_large_catalog(shop: _ApiShop) -> dict:
    """The same purchases once the sync benchmark has made its products visible to the branch too."""
    from django.db import connection

    from branch_api.provider.services import terms_ensure, visible_products

    connection.set_schema_to_public()
    visible = visible_products(terms_ensure(shop.branch)).count()
    shop.buyer.seconds_for(WARMUP_PURCHASES)
    seconds = shop.buyer.seconds_for(LARGE_CATALOG_PURCHASES)
    rate = LARGE_CATALOG_PURCHASES / seconds
    return {"purchases": LARGE_CATALOG_PURCHASES, "visible_products": visible, "api_purchases_per_s": round(rate, 1)}


def _codes_import(variant, count: int, *, prefix: str) -> None:
    from cardvault.services import codes_parse_text, import_commit

    text = "\n".join(f"{prefix}-{i:07d}" for i in range(count))
    import_commit(variant=variant, parsed=codes_parse_text(text), unit_cost=variant.cost, source="paste", note="bench")


def _purchases_profile(buyer: _SignedBranch, *, count: int) -> list[dict]:
    """cProfile of ``count`` more purchases; the entries of our own code with the most cumulative time."""
    profiler = cProfile.Profile()
    profiler.runcall(buyer.seconds_for, count)
    if PROFILE_FILE:
        profiler.dump_stats(PROFILE_FILE)
    stats = pstats.Stats(profiler)
    rows = []
    for (filename, line, function), (_calls, primitive, own, cumulative, _callers) in stats.stats.items():
        path = Path(filename)
        if not path.is_absolute() or ROOT not in path.parents or ".venv" in path.parts or "bench" in path.parts:
            continue
        rows.append(
            {
                "function": f"{path.relative_to(ROOT)}:{line}({function})",
                "calls": primitive,
                "own_ms_per_purchase": round(own / count * 1000, 3),
                "cumulative_ms_per_purchase": round(cumulative / count * 1000, 3),
            }
        )
    rows.sort(key=lambda row: row["cumulative_ms_per_purchase"], reverse=True)
    own_loop = [v[3] for k, v in stats.stats.items() if k[0] == __file__ and k[2] == "purchase"]
    total_ms = round(sum(own_loop) / count * 1000, 2)
    print(f"branch API purchase profile: {count} purchases, {total_ms} ms each under cProfile; top 10 of our code")
    print("  cumul ms    own ms    calls  function (ms per purchase)")
    for row in rows[:10]:
        print(
            f"  {row['cumulative_ms_per_purchase']:>8} {row['own_ms_per_purchase']:>8} {row['calls']:>8}  "
            f"{row['function']}"
        )
    return rows[:10]


def _purchases_check(shop: _ApiShop) -> dict:
    """Codes assigned == codes sold == purchases, each code at most once, balance = top-up - purchases."""
    from django.db import connection
    from django.db.models import Count, Sum

    from branch_api.provider.models import BranchPurchase
    from branch_api.provider.services import branch_balance_account
    from cardvault.models import Card, CardAssignment
    from orders.models import Order, OrderLine

    branch, variant, buyer, top_up = shop.branch, shop.variant, shop.buyer, shop.top_up
    expected = buyer.sent
    connection.set_schema_to_public()
    purchases = BranchPurchase.objects.filter(branch=branch)
    assignments = CardAssignment.objects.filter(card__variant=variant)
    sold = Card.objects.filter(variant=variant, status=Card.Status.SOLD).count()
    available = Card.objects.filter(variant=variant, status=Card.Status.AVAILABLE).count()
    assigned = assignments.count()
    distinct_cards = assignments.values("card_id").distinct().count()
    codes_twice = assignments.values("card_id").annotate(n=Count("pk")).filter(n__gt=1).count()
    ordered = OrderLine.objects.filter(order__branch_purchase__branch=branch).aggregate(q=Sum("quantity"))["q"] or 0
    delivered = Order.objects.filter(branch_purchase__branch=branch, status=Order.Status.DELIVERED).count()
    spent = purchases.aggregate(total=Sum("total"))["total"] or Decimal("0")
    balance = branch_balance_account(branch).natural_balance
    check = {
        "purchases": purchases.count(),
        "orders_delivered": delivered,
        "codes_ordered": ordered,
        "codes_sold": sold,
        "codes_assigned": assigned,
        "codes_assigned_distinct": distinct_cards,
        "codes_assigned_twice": codes_twice,
        "codes_returned": len(buyer.codes),
        "codes_returned_unique": len(set(buyer.codes)),
        "codes_left": available,
        "top_up": str(top_up),
        "purchases_total": str(spent),
        "answered_total": str(sum(buyer.totals, Decimal("0"))),
        "balance_after": str(balance),
    }
    check["zero_oversell"] = (
        check["purchases"] == delivered == ordered == sold == assigned == distinct_cards == expected
        and codes_twice == 0
        and len(buyer.codes) == len(set(buyer.codes)) == expected
        and available + sold == shop.stocked
        and spent == sum(buyer.totals, Decimal("0")) == PRICE * expected
        and balance == top_up - spent
    )
    return check


@contextmanager
def _sql_floor() -> Iterator[Callable[[int], float]]:
    """The raw SQL floor of one sale on demand: ``run(n)`` makes pgbench run bench/sale.sql ``n`` times
    (one client) in a throw-away shop and returns its sales/s."""
    from django.db import connection
    from django_tenants.utils import tenant_context

    from bench.commerce import BENCH_DIR, _bench_shop, _pgbench, _variant
    from bench.commerce import _codes_import as shop_codes_import
    from ledger.models import Account
    from ledger.services import account_get_or_create

    with _bench_shop() as (shop, _host):
        with tenant_context(shop):
            variant = _variant("Bench SQL sale card")
            shop_codes_import(variant, SQL_SALES_PER_ROUND * API_ROUNDS + 10)
            for code in ("payment_clearing", "sales_revenue", "cost_of_goods", "inventory"):
                account_get_or_create(code)
            accounts = dict(Account.objects.values_list("code", "pk"))
        connection.set_schema_to_public()

        def run(transactions: int) -> float:
            return _pgbench(
                schema=shop.schema_name,
                script=BENCH_DIR / "sale.sql",
                transactions=transactions,
                variant=variant.pk,
                product=variant.product_id,
                price=variant.price,
                cost=variant.cost,
                clearing=accounts["payment_clearing"],
                revenue=accounts["sales_revenue"],
                cogs=accounts["cost_of_goods"],
                inventory=accounts["inventory"],
            )

        yield run


# --- 7. Catalog sync --------------------------------------------------------------------------------


def bench_sync(branch, tag: str) -> dict:
    import httpx
    from django.core.wsgi import get_wsgi_application
    from django.db import connection
    from django_tenants.utils import tenant_context

    from branch_api.upstream import client as upstream_client
    from branch_api.upstream.models import UpstreamSelection
    from branch_api.upstream.services import selection_add
    from branch_api.upstream.sync import sync_full, sync_incremental

    connection.set_schema_to_public()
    started = time.perf_counter()
    root, variants = _site_a_catalog(branch, tag)
    setup_seconds = time.perf_counter() - started

    with tenant_context(branch):
        selection_add(kind=UpstreamSelection.Kind.CATEGORY, remote_id=root.pk, name=root.name)
    original = upstream_client.DEFAULT_TRANSPORT
    upstream_client.DEFAULT_TRANSPORT = httpx.WSGITransport(app=get_wsgi_application())
    try:
        with tenant_context(branch):
            started = time.perf_counter()
            full = sync_full()
            full_seconds = time.perf_counter() - started
            _copies_check(full_products=SYNC_PRODUCTS, variants=len(variants))
        connection.set_schema_to_public()
        expected = _site_a_changes(variants, tag)
        with tenant_context(branch):
            started = time.perf_counter()
            incremental = sync_incremental()
            incremental_seconds = time.perf_counter() - started
            _changes_check(incremental, expected)
    finally:
        upstream_client.DEFAULT_TRANSPORT = original
        connection.set_schema_to_public()
    return {
        "products": SYNC_PRODUCTS,
        "variants": len(variants),
        "changes": SYNC_CHANGES,
        "site_a_setup_seconds": round(setup_seconds, 2),
        "full_seconds": round(full_seconds, 3),
        "full_result": full.summary(),
        "full_products_per_s": round(SYNC_PRODUCTS / full_seconds),
        "full_meets_target": full_seconds <= SYNC_FULL_TARGET_S,
        "incremental_seconds": round(incremental_seconds, 3),
        "incremental_result": incremental.summary(),
        "incremental_meets_target": incremental_seconds <= SYNC_INCREMENTAL_TARGET_S,
        "target": f"full <= {SYNC_FULL_TARGET_S} s, incremental <= {SYNC_INCREMENTAL_TARGET_S} s",
    }


def _site_a_catalog(branch, tag: str):
    """SYNC_PRODUCTS products in SYNC_CATEGORIES categories under one root, SYNC_VARIANTS variants each, one
    variant with codes; stamped an hour old, as a catalog that existed before the branch connected."""
    from django.utils import timezone

    from branch_api.provider.services import terms_ensure
    from cardvault.models import Card
    from catalog.models import Category, Product, Variant

    root = _root_category(tag, "sync")
    leaves = Category.objects.bulk_create(
        Category(name=f"Bench sync {n:02d}", slug=f"{tag}-sync-{n:02d}", parent=root, sort_order=n)
        for n in range(SYNC_CATEGORIES)
    )
    for leaf in leaves:
        leaf.path, leaf.depth = f"{root.path}{leaf.pk}/", root.depth + 1
    Category.objects.bulk_update(leaves, ["path", "depth"])
    products = Product.objects.bulk_create(
        (
            Product(
                category=leaves[n % len(leaves)],
                name=f"Bench gift card {n:05d}",
                slug=f"{tag}-p{n:05d}",
                description="A benchmark product.",
            )
            for n in range(SYNC_PRODUCTS)
        ),
        batch_size=2000,
    )
    variants = Variant.objects.bulk_create(
        (
            Variant(
                product=product,
                sku=f"{tag.upper()}-{n:05d}-{face}",
                name=f"${10 * (face + 1)}",
                price=Decimal(10 * (face + 1)),
                cost=Decimal(9 * (face + 1)),
                sort_order=face,
            )
            for n, product in enumerate(products)
            for face in range(SYNC_VARIANTS)
        ),
        batch_size=2000,
    )
    _codes_import(variants[0], SYNC_CODES, prefix=f"{tag}-SYNC")
    an_hour_ago = timezone.now() - timedelta(hours=1)
    Product.objects.filter(category__in=leaves).update(updated=an_hour_ago)
    Variant.objects.filter(product__category__in=leaves).update(updated=an_hour_ago)
    Card.objects.filter(variant=variants[0]).update(status_changed_at=an_hour_ago, created=an_hour_ago)
    terms = terms_ensure(branch)
    terms.visible_categories.add(root)
    # Terms changed after a cursor make Site A answer "full" (so would a price list change): set long ago.
    type(terms).objects.filter(pk=terms.pk).update(updated=an_hour_ago - timedelta(hours=1))
    root.refresh_from_db()
    return root, variants


def _site_a_changes(variants: list, tag: str) -> dict:
    """Change SYNC_CHANGES products on Site A the way the admin would (save(), import_commit): names,
    prices and stock, in turn. Returns what the branch's copies must show afterwards."""
    from catalog.models import Product

    per_product = SYNC_VARIANTS
    step = max(SYNC_PRODUCTS // max(SYNC_CHANGES, 1), 1)
    expected = {"names": {}, "costs": {}, "stock": {}}
    for k in range(SYNC_CHANGES):
        variant = variants[(k * step) * per_product + per_product - 1]  # the product's last variant
        if k % 3 == 0:
            product = Product.objects.get(pk=variant.product_id)
            product.name = f"{product.name} (new)"
            product.save()
            expected["names"][product.pk] = product.name
        elif k % 3 == 1:
            variant.price += Decimal("1.00")
            variant.save()
            expected["costs"][variant.pk] = variant.price
        else:
            _codes_import(variant, 3, prefix=f"{tag}-CHG-{variant.pk}")
            expected["stock"][variant.pk] = 3
    return expected


def _copies_check(*, full_products: int, variants: int) -> None:
    from catalog.models import Product, Variant

    products = Product.objects.filter(upstream_id__isnull=False, is_active=True).count()
    copies = Variant.objects.filter(upstream_id__isnull=False, is_active=True).count()
    if (products, copies) != (full_products, variants):
        raise RuntimeError(f"full sync: {products} products, {copies} variants copied; expected {full_products}")


def _changes_check(result, expected: dict) -> None:
    from catalog.models import Product, Variant

    if result.full or result.skipped:
        raise RuntimeError(f"incremental sync did not run incrementally: {result.summary()}")
    names = dict(Product.objects.filter(upstream_id__in=expected["names"]).values_list("upstream_id", "name"))
    costs = dict(Variant.objects.filter(upstream_id__in=expected["costs"]).values_list("upstream_id", "cost"))
    stock = dict(Variant.objects.filter(upstream_id__in=expected["stock"]).values_list("upstream_id", "upstream_stock"))
    if names != expected["names"] or costs != expected["costs"] or stock != expected["stock"]:
        raise RuntimeError("incremental sync: the branch's copies do not show Site A's changes")
    if result.updated != SYNC_CHANGES:
        raise RuntimeError(f"incremental sync updated {result.updated} products, expected {SYNC_CHANGES}")


def main() -> int:
    """``python -m bench.run network``: only these benchmarks (the raw SQL limit is measured here)."""
    from bench.suite import _ensure_database

    _ensure_database()
    import django

    django.setup()
    from django.core.management import call_command

    from tenants.services import platform_tenant_ensure

    call_command("migrate", interactive=False, verbosity=0)
    platform_tenant_ensure()
    results = bench_all({})
    print(json.dumps(results, indent=2))
    print_results(results)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
