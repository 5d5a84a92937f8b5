"""Reconciliation runs of the same channel and day at the same time (the daily job and staff) end as one
run with one set of mismatches, on real PostgreSQL with committed rows."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from django.db import connection
from django.utils import timezone
from django_tenants.utils import schema_context

from payments.models import ReconciliationItem, ReconciliationRun
from payments.reconciliation import reconciliation_run_csv
from tests.commerce import pay, place, product_with_codes

STATEMENT = ("trade_no,amount\n" + "".join(f"G{n},1.00\n" for n in range(25))).encode()


def _reconcile(_):
    try:
        with schema_context("alpha"):
            return reconciliation_run_csv(provider="sandbox", day=timezone.localdate(), content=STATEMENT).pk
    finally:
        connection.close()


def test_concurrent_runs_of_one_day_leave_one_run_with_one_set_of_items(live_db):
    with schema_context("alpha"):
        assert pay(place(product_with_codes(codes=1), 1))[0]
    with ThreadPoolExecutor(max_workers=6) as pool:
        run_ids = set(pool.map(_reconcile, range(6)))
    with schema_context("alpha"):
        assert run_ids == {ReconciliationRun.objects.get().pk}
        assert ReconciliationItem.objects.count() == 26  # 25 unknown to us + our payment missing from the file
        assert ReconciliationRun.objects.get().mismatch_count == 26
