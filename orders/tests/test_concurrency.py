"""Real concurrency on PostgreSQL: no code sold twice, no payment applied twice."""

from concurrent.futures import ThreadPoolExecutor

from django.db import connection
from django_tenants.utils import schema_context

from cardvault.errors import OutOfStock
from cardvault.models import Card, CardAssignment
from ledger.models import Transaction
from ledger.services import ledger_check
from orders.models import Order
from payments.services import payment_callback_handle
from tests.commerce import place, product_with_codes, sandbox_notification


def _in_thread(schema, fn, *args):
    try:
        with schema_context(schema):
            return fn(*args)
    finally:
        connection.close()


def test_200_buyers_race_for_the_last_50_codes(live_db):
    with schema_context("beta"):
        variant = product_with_codes(codes=50)

    def buy(i):
        try:
            return place(variant, 1, email=f"buyer{i}@race.test").pk
        except OutOfStock as exc:
            return exc.code

    with ThreadPoolExecutor(max_workers=24) as pool:
        outcomes = list(pool.map(lambda i: _in_thread("beta", buy, i), range(200)))
    order_ids = [o for o in outcomes if isinstance(o, int)]
    assert len(order_ids) == 50
    assert outcomes.count("out_of_stock") == 150

    def pay_order(order_id):
        order = Order.objects.get(pk=order_id)
        return payment_callback_handle(provider_code="sandbox", data=sandbox_notification(order))

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda pk: _in_thread("beta", pay_order, pk), order_ids))
    assert results == [(True, "ok")] * 50
    with schema_context("beta"):
        assert Order.objects.filter(pk__in=order_ids, status=Order.Status.DELIVERED).count() == 50
        assignments = CardAssignment.objects.filter(order_line__order_id__in=order_ids)
        assert assignments.count() == 50
        assert assignments.values("card").distinct().count() == 50  # no code twice
        assert Card.objects.filter(variant=variant, status=Card.Status.SOLD).count() == 50
        assert ledger_check() == []


def test_ten_identical_callbacks_at_once_deliver_once(live_db):
    with schema_context("beta"):
        variant = product_with_codes(codes=5)
        order = place(variant, 2)
        notification = sandbox_notification(order)

    def callback(_):
        return payment_callback_handle(provider_code="sandbox", data=notification)

    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(lambda i: _in_thread("beta", callback, i), range(10)))
    assert results == [(True, "ok")] * 10
    with schema_context("beta"):
        order.refresh_from_db()
        assert order.status == Order.Status.DELIVERED
        assert CardAssignment.objects.filter(order_line__order=order).count() == 2
        assert Card.objects.filter(variant=variant, status=Card.Status.SOLD).count() == 2
        assert Transaction.objects.filter(idempotency_key=f"order-paid:{order.number}").count() == 1
        assert order.events.filter(to_status="paid").count() == 1
        assert ledger_check() == []


def test_expiry_racing_a_payment_never_leaves_a_paid_order_without_codes(live_db):
    from datetime import timedelta

    from django.utils import timezone

    from orders.services import order_expire

    with schema_context("beta"):
        variant = product_with_codes(codes=3)
        orders = [place(variant, 1) for _ in range(3)]
        notifications = [sandbox_notification(o) for o in orders]
        Order.objects.filter(pk__in=[o.pk for o in orders]).update(expires_at=timezone.now() - timedelta(seconds=1))

    jobs = [("expire", o.pk) for o in orders] + [("pay", n) for n in notifications]

    def run(job):
        kind, arg = job
        if kind == "expire":
            return order_expire(order_id=arg)
        return payment_callback_handle(provider_code="sandbox", data=arg)

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(lambda job: _in_thread("beta", run, job), jobs))
    with schema_context("beta"):
        for order in Order.objects.filter(pk__in=[o.pk for o in orders]):
            assert order.status == Order.Status.DELIVERED, order.events.values_list("to_status", "message")
            assert order.lines.get().assignments.count() == 1
        assert ledger_check() == []
