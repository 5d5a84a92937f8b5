"""Commerce benchmarks, each against a baseline measured in the same run (see bench/suite.py).

They run in a shop provisioned for the run and dropped afterwards, so every run starts from the same
state. Counts scale down with BENCH_PURCHASES, BENCH_SQL_SALES, BENCH_IMPORT_CODES,
BENCH_CATEGORY_PRODUCTS and BENCH_PAGE_REQUESTS; BENCH_PROFILE_IMPORT=1 adds a cProfile of the import.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PURCHASES = int(os.environ.get("BENCH_PURCHASES", "300"))
SQL_SALES = int(os.environ.get("BENCH_SQL_SALES", "3000"))
IMPORT_CODES = int(os.environ.get("BENCH_IMPORT_CODES", "100000"))
CATEGORY_PRODUCTS = int(os.environ.get("BENCH_CATEGORY_PRODUCTS", "30"))
PAGE_REQUESTS = int(os.environ.get("BENCH_PAGE_REQUESTS", "500"))
PROFILE_IMPORT = os.environ.get("BENCH_PROFILE_IMPORT", "") not in ("", "0")
WARMUP_PURCHASES = 10
SHOP_PREFIX = "bshop"


def bench_all(*, requests_per_second: Callable[..., float]) -> dict:
    """Run the commerce benchmarks in a throw-away shop; returns their results by name."""
    _leftover_shops_drop()
    with _bench_shop() as (branch, host):
        return {
            "purchase": bench_purchase(branch),
            "import": bench_import(branch),
            "category_page": bench_category_page(branch, host, requests_per_second),
        }


def print_results(results: dict) -> None:
    p, i, c = results["purchase"], results["import"], results["category_page"]
    print(
        f"purchase      {p['services_sales_per_s']} sales/s through the services vs {p['sql_sales_per_s']} sales/s "
        f"raw SQL (pgbench, 1 client): ratio {p['services_vs_sql']} ({p['services_ms_per_sale']} ms vs "
        f"{p['sql_ms_per_sale']} ms per sale)"
    )
    print(
        f"code import   {i['import_codes_per_s']} codes/s through import_commit vs {i['copy_rows_per_s']} rows/s raw "
        f"COPY: ratio {i['import_vs_copy']} ({i['codes']} codes in {i['import_seconds']} s vs {i['copy_seconds']} s)"
    )
    print(
        f"category page {c['category_rps']} req/s ({c['products']} products, {c['queries_per_request']} queries) vs "
        f"{c['trivial_rps']} req/s trivial view: ratio {c['category_vs_trivial']} "
        f"({c['extra_ms_per_request']} ms/request for the page)"
    )


# --- The shop the benchmarks run in -----------------------------------------------------------------


@contextmanager
def _bench_shop() -> Iterator[tuple[object, str]]:
    from django.db import connection

    from tenants.models import Branch
    from tenants.services import branch_provision

    result = branch_provision(
        slug=f"{SHOP_PREFIX}{uuid.uuid4().hex[:6]}", name="Bench shop", owner_email="o@bench.test", password="x"
    )
    branch = Branch.objects.get(pk=result.branch_id)
    try:
        yield branch, result.domain
    finally:
        connection.set_schema_to_public()
        branch.delete(force_drop=True)
        _queued_tasks_purge()


def _leftover_shops_drop() -> None:
    """Shops of an interrupted earlier run."""
    from tenants.models import Branch

    for branch in Branch.objects.filter(slug__startswith=SHOP_PREFIX):
        branch.delete(force_drop=True)


def _queued_tasks_purge() -> None:
    # Delivery e-mails queued by the purchases; no worker consumes the bench broker.
    from config.celery import app

    app.control.purge()


def _variant(name: str, *, price: str = "10.00", cost: str = "8.00", category=None):
    from catalog.models import Category, Product, Variant

    category = category or Category.objects.get_or_create(slug="bench", defaults={"name": "Bench", "icon": "⏱️"})[0]
    product = Product.objects.create(category=category, name=name, slug=f"bench-{uuid.uuid4().hex[:8]}")
    return Variant.objects.create(
        product=product, sku=f"BENCH-{uuid.uuid4().hex[:10]}", name="$10", price=Decimal(price), cost=Decimal(cost)
    )


def _codes_import(variant, count: int):
    from cardvault.services import codes_parse_text, import_commit

    text = "\n".join(f"{variant.sku}-{i:07d}" for i in range(count))
    return import_commit(
        variant=variant, parsed=codes_parse_text(text), unit_cost=variant.cost, source="paste", note="bench"
    )


# --- 3. Purchase throughput ---------------------------------------------------------------------------


def bench_purchase(branch) -> dict:
    """N purchases, one after another, through order_place -> payment_start -> signed sandbox callback."""
    from django_tenants.utils import tenant_context

    from ledger.models import Account
    from orders.models import Order
    from orders.services import CartItem, order_place
    from payments.providers.sandbox import SandboxProvider
    from payments.services import payment_callback_handle, payment_start

    with tenant_context(branch):
        variant = _variant("Bench sale card")
        _codes_import(variant, WARMUP_PURCHASES + PURCHASES + SQL_SALES + 10)
        sandbox = SandboxProvider()

        def purchase(number: int) -> None:
            order = order_place(items=[CartItem(variant_id=variant.pk, quantity=1)], email=f"b{number}@bench.test")
            attempt, _url = payment_start(order=order, provider_code="sandbox")
            accepted, reason = payment_callback_handle(
                provider_code="sandbox", data=sandbox.notification(attempt=attempt)
            )
            if not accepted:
                raise RuntimeError(f"bench payment refused: {reason}")

        for number in range(WARMUP_PURCHASES):
            purchase(number)
        started = time.perf_counter()
        for number in range(PURCHASES):
            purchase(WARMUP_PURCHASES + number)
        services_seconds = time.perf_counter() - started
        delivered = Order.objects.filter(status=Order.Status.DELIVERED).count()
        if delivered != WARMUP_PURCHASES + PURCHASES:
            raise RuntimeError(f"expected {WARMUP_PURCHASES + PURCHASES} delivered orders, found {delivered}")
        accounts = dict(Account.objects.values_list("code", "pk"))

    variables = {
        "variant": variant.pk,
        "product": variant.product_id,
        "price": variant.price,
        "cost": variant.cost,
        "clearing": accounts["payment_clearing"],
        "revenue": accounts["sales_revenue"],
        "cogs": accounts["cost_of_goods"],
        "inventory": accounts["inventory"],
    }
    sql_tps = _pgbench(schema=branch.schema_name, script=BENCH_DIR / "sale.sql", transactions=SQL_SALES, **variables)
    with tenant_context(branch):
        sold_by_sql = Order.objects.filter(payment_provider="pgbench", status=Order.Status.DELIVERED).count()
    if sold_by_sql != SQL_SALES:
        raise RuntimeError(f"pgbench delivered {sold_by_sql} of {SQL_SALES} sales")
    services_rate = PURCHASES / services_seconds
    return {
        "purchases": PURCHASES,
        "sql_sales": SQL_SALES,
        "services_sales_per_s": round(services_rate, 1),
        "sql_sales_per_s": round(sql_tps, 1),
        "services_vs_sql": round(services_rate / sql_tps, 3),
        "services_ms_per_sale": round(1000 / services_rate, 2),
        "sql_ms_per_sale": round(1000 / sql_tps, 3),
    }


def _pgbench_binary() -> str:
    try:
        import pgserver
    except ImportError:
        pgserver = None
    if pgserver is not None:
        shipped = Path(pgserver.__file__).resolve().parent / "pginstall" / "bin" / "pgbench"
        if shipped.exists():
            return str(shipped)
    found = shutil.which("pgbench")
    if not found:
        raise RuntimeError("pgbench not found (neither shipped with pgserver nor on PATH)")
    return found


def _pgbench(*, schema: str, script: Path, transactions: int, **variables) -> float:
    """One client running ``script`` ``transactions`` times against the bench database; returns tps."""
    from config.env import database_from_url

    config = database_from_url(os.environ["DATABASE_URL"])
    command = [_pgbench_binary(), "--no-vacuum", "--client=1", "--jobs=1", f"--transactions={transactions}"]
    command += [f"--file={script}", *(f"--define={name}={value}" for name, value in variables.items())]
    for flag, key in (("--host", "HOST"), ("--port", "PORT"), ("--username", "USER")):
        if config[key]:
            command.append(f"{flag}={config[key]}")
    command.append(config["NAME"])
    env = {**os.environ, "PGOPTIONS": f"-c search_path={schema}"}
    if config["PASSWORD"]:
        env["PGPASSWORD"] = config["PASSWORD"]
    run = subprocess.run(command, env=env, capture_output=True, text=True)
    match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", run.stdout)
    if run.returncode != 0 or match is None:
        raise RuntimeError(f"pgbench failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")
    return float(match.group(1))


# --- 4. Code import -----------------------------------------------------------------------------------


def bench_import(branch) -> dict:
    """``import_commit`` of IMPORT_CODES new codes vs COPY of as many plaintext rows into the card table."""
    from django.db import connection, transaction
    from django.utils import timezone
    from django_tenants.utils import tenant_context

    from cardvault.models import Card, ImportBatch
    from cardvault.services import codes_parse_text, import_commit

    with tenant_context(branch):
        variant = _variant("Bench import card")
        started = time.perf_counter()
        parsed = codes_parse_text("\n".join(f"IMP-{variant.pk}-{i:07d}" for i in range(IMPORT_CODES)))
        parse_seconds = time.perf_counter() - started
        started = time.perf_counter()
        batch = import_commit(variant=variant, parsed=parsed, unit_cost=Decimal("1.00"), source="paste")
        import_seconds = time.perf_counter() - started
        if batch.imported != IMPORT_CODES:
            raise RuntimeError(f"imported {batch.imported} of {IMPORT_CODES} codes")

        copy_variant = _variant("Bench copy card")
        copy_batch = ImportBatch.objects.create(variant=copy_variant, source="paste", unit_cost=Decimal("1.00"))
        now = timezone.now()
        rows = [
            (copy_variant.pk, copy_batch.pk, code, "", "plain", code, "available", False, None, 0, now)
            for code in (f"CPY-{copy_variant.pk}-{i:07d}" for i in range(IMPORT_CODES))
        ]
        columns = "variant_id, batch_id, code_encrypted, secret_encrypted, key_version, digest, status, reusable, "
        columns += "max_uses, use_count, created"
        started = time.perf_counter()
        with transaction.atomic(), connection.cursor() as cursor:
            with cursor.cursor.copy(f"COPY {Card._meta.db_table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        copy_seconds = time.perf_counter() - started

        profile = _import_profile(variant) if PROFILE_IMPORT else None
        Card.objects.filter(batch__variant__in=[variant, copy_variant]).delete()

    import_rate, copy_rate = IMPORT_CODES / import_seconds, IMPORT_CODES / copy_seconds
    result = {
        "codes": IMPORT_CODES,
        "parse_seconds": round(parse_seconds, 3),
        "import_seconds": round(import_seconds, 3),
        "copy_seconds": round(copy_seconds, 3),
        "import_codes_per_s": round(import_rate),
        "copy_rows_per_s": round(copy_rate),
        "import_vs_copy": round(import_rate / copy_rate, 3),
    }
    if profile is not None:
        result["import_profile_top"] = profile
    return result


def _import_profile(variant) -> list[dict]:
    """cProfile of a second import of as many codes; the functions with the most cumulative time."""
    from cardvault.services import codes_parse_text, import_commit

    parsed = codes_parse_text("\n".join(f"PRF-{variant.pk}-{i:07d}" for i in range(IMPORT_CODES)))
    profiler = cProfile.Profile()
    profiler.runcall(import_commit, variant=variant, parsed=parsed, unit_cost=Decimal("1.00"), source="paste")
    stats = pstats.Stats(profiler)
    rows = []
    for (filename, line, function), (_calls, primitive, own, cumulative, _callers) in stats.stats.items():
        if "site-packages" in filename and "psycopg" not in filename:
            continue
        where = f"{Path(filename).parent.name}/{Path(filename).name}:{line}({function})"
        rows.append(
            {"function": where, "calls": primitive, "own_s": round(own, 3), "cumulative_s": round(cumulative, 3)}
        )
    rows.sort(key=lambda row: row["cumulative_s"], reverse=True)
    print("import_commit profile (cumulative seconds):")
    for row in rows[:15]:
        print(f"  {row['cumulative_s']:>7} {row['own_s']:>7} {row['calls']:>8}  {row['function']}")
    return rows[:15]


# --- 5. Category page ---------------------------------------------------------------------------------


def bench_category_page(branch, host: str, requests_per_second: Callable[..., float]) -> dict:
    """A category page listing CATEGORY_PRODUCTS products (two variants each, in stock, one price rule
    in force) vs a view returning "ok", both through the full middleware stack of a branch host."""
    from django.db import connection
    from django.test import Client, override_settings
    from django_tenants.utils import tenant_context

    from catalog.models import Brand, Category, PriceList, PriceRule, Product, Variant

    with tenant_context(branch):
        root = Category.objects.create(name="Gift cards", slug="gift-cards", icon="🎁")
        leaf = Category.objects.create(name="Steam", slug="steam", icon="🎮", parent=root)
        brand = Brand.objects.create(name="Steam", slug="steam")
        price_list = PriceList.objects.create(name="Storefront", code="storefront", is_default=True)
        PriceRule.objects.create(price_list=price_list, scope="category", category=root, mode="percent", value=12)
        for number in range(CATEGORY_PRODUCTS):
            product = Product.objects.create(
                category=leaf, brand=brand, name=f"Gift card {number:02d}", slug=f"gift-card-{number:02d}"
            )
            for face in (10, 25):
                variant = Variant.objects.create(
                    product=product,
                    sku=f"GC-{number:02d}-{face}",
                    name=f"${face}",
                    price=Decimal(face) * Decimal("1.04"),
                    cost=Decimal(face) * Decimal("0.94"),
                )
                _codes_import(variant, 5)
        path = f"/c/{leaf.slug}/"

    client = Client(HTTP_HOST=host)
    category_rps = requests_per_second(client, path, PAGE_REQUESTS)
    queries: list[str] = []
    with connection.execute_wrapper(lambda execute, sql, *args: queries.append(sql) or execute(sql, *args)):
        client.get(path)
    with override_settings(ROOT_URLCONF="bench.urls_trivial"):
        trivial_rps = requests_per_second(Client(HTTP_HOST=host), "/", PAGE_REQUESTS)
    return {
        "requests": PAGE_REQUESTS,
        "products": CATEGORY_PRODUCTS,
        "queries_per_request": len(queries),
        "category_rps": round(category_rps, 1),
        "trivial_rps": round(trivial_rps, 1),
        "category_vs_trivial": round(category_rps / trivial_rps, 3),
        "extra_ms_per_request": round((1 / category_rps - 1 / trivial_rps) * 1000, 2),
    }
