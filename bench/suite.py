"""Benchmarks, each against a baseline measured in the same run. Results: bench/results.json.

1. Branch provisioning: template clone (what we ship) vs running every migration on a new schema.
2. Tenant routing: a request through the Host -> branch middleware (cached lookup) vs the same
   request with the branch fixed in advance (a single-tenant deployment), plus the lookup alone.
3. Purchase throughput: order -> sandbox payment -> delivered through the real services vs the raw SQL
   floor of one sale (bench/sale.sql run by pgbench on the same tables).
4. Code import: codes/s through ``import_commit`` (HMAC dedupe, encryption, ledger) vs a raw COPY of
   the same number of plaintext rows into the card table.
5. Category page: requests/s of a category page listing ~30 products vs a trivial view behind the same
   middleware stack.
6. Branch API purchases: signed ``POST /api/branch/v1/orders`` through Site A's whole stack in-process vs
   the raw SQL floor of 3 (pgbench), then a check that nothing was oversold or mis-booked.
7. Catalog sync: ``sync_full`` of 10,000 Site A products into a branch, then ``sync_incremental`` after
   100 of them changed.

3-5 run in a shop provisioned for the run and dropped afterwards (bench/commerce.py); 6-7 in a branch
provisioned for the run, with the Site A data they make deleted afterwards (bench/network.py).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import psycopg

RESULTS = Path(__file__).resolve().parent / "results.json"
PROVISION_RUNS = int(os.environ.get("BENCH_PROVISION_RUNS", "5"))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "1500"))
KEEP_DATABASE = os.environ.get("BENCH_KEEP_DATABASE", "") not in ("", "0")


def _ensure_database() -> None:
    """A new, empty bench database for every run (BENCH_KEEP_DATABASE=1 reuses the last one): a database
    kept from an earlier run may carry schema an edited migration no longer creates, which ``migrate``
    cannot see (e.g. the ledger's ``account_non_negative`` check before it learnt normal sides)."""
    from config.env import database_from_url

    config = database_from_url(os.environ["DATABASE_URL"])
    params = {
        "dbname": "postgres",
        "user": config["USER"] or None,
        "host": config["HOST"] or None,
        "port": config["PORT"] or None,
        "password": config["PASSWORD"] or None,
        "autocommit": True,
    }
    with psycopg.connect(**{k: v for k, v in params.items() if v is not None}) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [config["NAME"]]).fetchone()
        if exists and not KEEP_DATABASE:
            conn.execute(f'DROP DATABASE "{config["NAME"]}"')
        if not exists or not KEEP_DATABASE:
            conn.execute(f'CREATE DATABASE "{config["NAME"]}"')


def _median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 1)


def bench_provisioning() -> dict:
    from django.core.management import call_command
    from django.db import connection

    from tenants import services
    from tenants.models import Branch

    run = uuid.uuid4().hex[:6]

    def provision_all(prefix: str) -> list[float]:
        samples = []
        for i in range(PROVISION_RUNS):
            started = time.perf_counter()
            services.branch_provision(slug=f"{prefix}{run}{i}", name="Bench", owner_email="o@bench.test", password="x")
            samples.append(time.perf_counter() - started)
        return samples

    def schema_by_migrations(schema: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE SCHEMA "{schema}"')
        call_command("migrate_schemas", tenant=True, schema_name=schema, interactive=False, verbosity=0)

    clone = provision_all("bclone")
    original = services._schema_ensure
    services._schema_ensure = schema_by_migrations
    try:
        migrations = provision_all("bmigr")
    finally:
        services._schema_ensure = original

    connection.set_schema_to_public()
    for branch in Branch.objects.filter(slug__contains=run):
        branch.delete(force_drop=True)
    clone_ms, migrations_ms = _median_ms(clone), _median_ms(migrations)
    return {
        "runs": PROVISION_RUNS,
        "clone_median_ms": clone_ms,
        "migrations_median_ms": migrations_ms,
        "speedup": round(migrations_ms / clone_ms, 2),
        "target": "clone <= 1000 ms median and >= 3x faster than migrations",
        "meets_target": clone_ms <= 1000 and migrations_ms / clone_ms >= 3,
    }


def _requests_per_second(client, path: str, requests: int = REQUESTS) -> float:
    for _ in range(50):
        assert client.get(path).status_code == 200
    started = time.perf_counter()
    for _ in range(requests):
        client.get(path)
    return requests / (time.perf_counter() - started)


def bench_routing() -> dict:
    from django.conf import settings
    from django.test import Client, override_settings

    from bench.fixed_tenant import FixedBranchMiddleware
    from tenants.models import Branch, Domain
    from tenants.routing import branch_for_host, host_cache_forget

    alpha = Branch.objects.get(slug="alpha")
    routed = _requests_per_second(Client(HTTP_HOST="alpha.localhost"), "/")
    FixedBranchMiddleware.branch = alpha
    middleware = ["bench.fixed_tenant.FixedBranchMiddleware", *settings.MIDDLEWARE[1:]]
    with override_settings(MIDDLEWARE=middleware):
        fixed = _requests_per_second(Client(HTTP_HOST="alpha.localhost"), "/")

    lookups = 3000
    branch_for_host("alpha.localhost")
    started = time.perf_counter()
    for _ in range(lookups):
        branch_for_host("alpha.localhost")
    cached_us = (time.perf_counter() - started) / lookups * 1e6
    started = time.perf_counter()
    for _ in range(lookups):
        Domain.objects.select_related("tenant").get(domain="alpha.localhost")
    uncached_us = (time.perf_counter() - started) / lookups * 1e6
    host_cache_forget("alpha.localhost")
    return {
        "requests": REQUESTS,
        "routed_rps": round(routed, 1),
        "single_tenant_rps": round(fixed, 1),
        "routed_vs_single_tenant": round(routed / fixed, 3),
        "overhead_us_per_request": round((1 / routed - 1 / fixed) * 1e6, 1),
        "lookup_cached_us": round(cached_us, 1),
        "lookup_database_us": round(uncached_us, 1),
        "cached_vs_database_lookup_speedup": round(uncached_us / cached_us, 2),
    }


def main() -> int:
    _ensure_database()
    import django

    django.setup()
    from django.core.management import call_command

    from tenants.services import branch_provision, platform_tenant_ensure

    call_command("migrate", interactive=False, verbosity=0)
    platform_tenant_ensure()
    branch_provision(slug="alpha", name="Alpha", owner_email="o@alpha.bench", password="x")

    from bench import commerce, network

    results = {"provisioning": bench_provisioning(), "routing": bench_routing()}
    results.update(commerce.bench_all(requests_per_second=_requests_per_second))
    results.update(network.bench_all(results))
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    p, r = results["provisioning"], results["routing"]
    print(
        f"provisioning  clone {p['clone_median_ms']} ms vs migrations {p['migrations_median_ms']} ms "
        f"(median of {p['runs']}): {p['speedup']}x faster; target met: {p['meets_target']}"
    )
    print(
        f"routing       {r['routed_rps']} req/s routed vs {r['single_tenant_rps']} req/s single-tenant: "
        f"ratio {r['routed_vs_single_tenant']} ({r['overhead_us_per_request']} us/request)"
    )
    print(
        f"host lookup   cached {r['lookup_cached_us']} us vs database {r['lookup_database_us']} us: "
        f"{r['cached_vs_database_lookup_speedup']}x"
    )
    commerce.print_results(results)
    network.print_results(results)
    print(f"written to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
