"""A customer buys a Site A product on a branch: the branch buys the code from Site A out of its
balance and delivers it. THE worked example: Site A cost 10, branch price 15, branch profit 5."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import pytest
from celery.exceptions import Retry
from django.core import mail
from django.db import connection as db_connection
from django.utils import timezone
from django_tenants.utils import schema_context

from branch_api.provider.models import BranchPurchase
from branch_api.upstream import services
from branch_api.upstream.models import UpstreamPurchase, UpstreamSelection
from branch_api.upstream.selectors import upstream_orders_due
from branch_api.upstream.services import (
    FulfilOutcome,
    branch_markup_set,
    selection_add,
    sync_full,
    upstream_fulfil,
    upstream_retry_waiting,
)
from cardvault.crypto import code_digest
from cardvault.models import Card, CardAssignment
from cardvault.services import codes_parse_text, import_commit
from catalog.models import Variant
from conftest import host_client
from ledger.models import Account
from ledger.services import ledger_check
from orders.models import Order
from orders.selectors import order_delivered_codes
from tenants.models import Branch
from tests.commerce import pay, place

from .conftest import alpha_balance_at_site_a, show_everything_to_alpha, site_a_variant, top_up

D = Decimal
S = Order.Status


class FakeTask:
    """The bound Celery task: ``retry`` raises like Celery's and remembers the countdown."""

    def __init__(self):
        self.countdowns: list[int] = []

    def retry(self, *, countdown: int):
        self.countdowns.append(countdown)
        return Retry(when=countdown)


def _remote_codes(remote_variant: Variant) -> list[str]:
    """The codes Site A assigned to the branch's purchases of ``remote_variant``."""
    with schema_context("public"):
        assignments = CardAssignment.objects.filter(order_line__variant=remote_variant).select_related("card")
        from cardvault.services import cards_reveal

        return sorted(c.code for c in cards_reveal(cards=[a.card for a in assignments], channel="admin"))


def _shop_with_upstream_product(*, price: str = "10.00", codes: int = 1, balance: str | None = "100.00"):
    """Site A sells a product at ``price`` to alpha; alpha sells it at +50 %; returns (remote, local) variants."""
    remote = site_a_variant(price=price, codes=codes)
    show_everything_to_alpha()
    if balance:
        top_up(balance, f"top-up-{remote.pk}")
    with schema_context("alpha"):
        selection_add(kind=UpstreamSelection.Kind.PRODUCT, remote_id=remote.product_id)
        branch_markup_set(percent=D("50"))
        sync_full()
        local = Variant.objects.get(upstream_id=remote.pk)
    return remote, local


def _paid_order(local: Variant, quantity: int = 1) -> Order:
    with schema_context("alpha"):
        order = place(local, quantity)
        assert pay(order) == (True, "ok")
        order.refresh_from_db()
        return order


def _delivered_codes(order: Order) -> list[str]:
    with schema_context("alpha"):
        order = Order.objects.get(pk=order.pk)
        return sorted(code for line in order_delivered_codes(order, channel="admin") for code, _ in line.codes)


def test_a_customer_buys_a_site_a_product_and_gets_the_code_site_a_sold(site_a, queued):
    remote, local = _shop_with_upstream_product(price="10.00")
    order = _paid_order(local)
    assert (order.total, order.status) == (D("15.00"), S.AWAITING_UPSTREAM)
    assert queued.order_ids == [order.pk]  # bought by a task once the payment committed

    with schema_context("alpha"):
        assert upstream_fulfil(order_id=order.pk) == FulfilOutcome.DELIVERED
        order.refresh_from_db()
        revenue = Account.objects.get(code="sales_revenue").natural_balance
        cost = Account.objects.get(code="cost_of_goods").natural_balance
        purchase = UpstreamPurchase.objects.get()
        line_pk = order.lines.get().pk
        assert ledger_check() == []
    assert order.status == S.DELIVERED
    assert _delivered_codes(order) == _remote_codes(remote) and len(_remote_codes(remote)) == 1
    assert (revenue, cost, revenue - cost) == (D("15.00"), D("10.00"), D("5.00"))  # the worked example
    assert alpha_balance_at_site_a() == D("90.00")
    assert purchase.status == UpstreamPurchase.Status.DONE and purchase.reference == f"alpha:{line_pk}"
    with schema_context("public"):
        assert ledger_check() == []
    assert [m.subject for m in mail.outbox if not m.subject.startswith("Your codes")] == []  # no staff alert


def test_fulfilling_again_never_buys_twice(site_a, queued):
    remote, local = _shop_with_upstream_product(codes=3)
    order = _paid_order(local)
    with schema_context("alpha"):
        upstream_fulfil(order_id=order.pk)
        assert upstream_fulfil(order_id=order.pk) == FulfilOutcome.NOTHING_TO_DO
    with schema_context("public"):
        assert BranchPurchase.objects.filter(branch__slug="alpha").count() == 1
    assert alpha_balance_at_site_a() == D("90.00")
    assert len(_remote_codes(remote)) == 1


def test_a_crash_after_site_a_answered_replays_the_same_purchase(site_a, queued, monkeypatch):
    remote, local = _shop_with_upstream_product(codes=3)
    order = _paid_order(local, quantity=2)
    real_import = services._purchase_import

    def crash(*args, **kwargs):
        raise RuntimeError("worker killed after Site A answered")

    monkeypatch.setattr(services, "_purchase_import", crash)
    with schema_context("alpha"), pytest.raises(RuntimeError):
        upstream_fulfil(order_id=order.pk)
    with schema_context("alpha"):
        assert Order.objects.get(pk=order.pk).status == S.AWAITING_UPSTREAM
        assert not Card.objects.filter(variant=local).exists()  # nothing imported: rolled back
    assert alpha_balance_at_site_a() == D("80.00")  # Site A sold 2 × 10

    monkeypatch.setattr(services, "_purchase_import", real_import)
    with schema_context("alpha"):
        assert upstream_fulfil(order_id=order.pk) == FulfilOutcome.DELIVERED
    with schema_context("public"):
        assert BranchPurchase.objects.filter(branch__slug="alpha").count() == 1
    assert alpha_balance_at_site_a() == D("80.00")  # not charged again
    assert _delivered_codes(order) == _remote_codes(remote) and len(_remote_codes(remote)) == 2


def test_site_a_down_keeps_the_order_waiting_and_the_shop_open_until_it_is_back(site_a, queued):
    remote, local = _shop_with_upstream_product()
    order = _paid_order(local)
    site_a.down = True
    task = FakeTask()

    with schema_context("alpha"), pytest.raises(Retry):
        upstream_fulfil(order_id=order.pk, task=task)
    with schema_context("alpha"):
        assert Order.objects.get(pk=order.pk).status == S.AWAITING_UPSTREAM
        purchase = UpstreamPurchase.objects.get()
        with pytest.raises(Retry):
            upstream_fulfil(order_id=order.pk, task=task)
    assert task.countdowns == [30, 60]  # back-off doubles (capped at 30 minutes)
    assert (purchase.status, purchase.last_error_code) == (UpstreamPurchase.Status.PENDING, "unreachable")
    assert host_client("alpha.localhost").get("/").status_code == 200
    assert host_client("alpha.localhost").get(f"/p/{local.product.slug}/").status_code == 200

    site_a.down = False
    with schema_context("alpha"):
        assert upstream_fulfil(order_id=order.pk, task=task) == FulfilOutcome.DELIVERED
    assert _delivered_codes(order) == _remote_codes(remote)
    assert alpha_balance_at_site_a() == D("90.00")


def test_insufficient_balance_waits_alerts_the_staff_once_and_completes_after_a_top_up(site_a, queued):
    remote, local = _shop_with_upstream_product(balance=None)
    order = _paid_order(local)
    queued.order_ids.clear()

    with schema_context("alpha"):
        assert upstream_fulfil(order_id=order.pk, task=FakeTask()) == FulfilOutcome.WAITING  # no Celery retry
        assert upstream_fulfil(order_id=order.pk) == FulfilOutcome.WAITING
        purchase = UpstreamPurchase.objects.get()
        assert Order.objects.get(pk=order.pk).status == S.AWAITING_UPSTREAM
    assert (purchase.status, purchase.last_error_code) == (UpstreamPurchase.Status.BLOCKED, "insufficient_balance")
    assert len(mail.outbox) == 1  # once, not per attempt
    assert mail.outbox[0].to == ["owner@alpha.test"]
    assert order.number in mail.outbox[0].subject and "insufficient_balance" in mail.outbox[0].body

    top_up("50.00", "top-up-later")
    with schema_context("alpha"):
        assert upstream_retry_waiting() == 0  # its back-off has not run out yet
        UpstreamPurchase.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
        assert upstream_retry_waiting() == 1
        assert queued.order_ids == [order.pk]
        assert upstream_fulfil(order_id=order.pk) == FulfilOutcome.DELIVERED
    assert alpha_balance_at_site_a() == D("40.00")
    assert _delivered_codes(order) == _remote_codes(remote)
    # No second "blocked" alert; the only new staff mail is Site A's low-balance notice (40 is below 50).
    # (The customer's delivery e-mail may arrive too when a worker from an earlier test is running.)
    staff_mail = [m.subject for m in mail.outbox[1:] if not m.subject.startswith("Your codes")]
    assert staff_mail == ["Alpha Cards: your balance at the platform is low"]


def test_out_of_stock_at_site_a_waits_for_new_codes(site_a, queued):
    remote, local = _shop_with_upstream_product(codes=1)
    with schema_context("alpha"):
        Variant.objects.filter(pk=local.pk).update(upstream_stock=5)  # synced before Site A sold out
    order = _paid_order(local, quantity=2)
    with schema_context("alpha"):
        assert upstream_fulfil(order_id=order.pk) == FulfilOutcome.WAITING
        assert UpstreamPurchase.objects.get().last_error_code == "out_of_stock"
    assert len(mail.outbox) == 1

    with schema_context("public"):
        import_commit(variant=remote, parsed=codes_parse_text("RESTOCK-1"), unit_cost=D("8"), source="paste")
    with schema_context("alpha"):
        assert upstream_fulfil(order_id=order.pk) == FulfilOutcome.DELIVERED
    assert len(_delivered_codes(order)) == 2


def _site_a_stock_codes(remote: Variant) -> list[str]:
    from cardvault.services import cards_reveal

    with schema_context("public"):
        cards = list(Card.objects.filter(variant=remote, status=Card.Status.AVAILABLE).order_by("pk"))
        return [c.code for c in cards_reveal(cards=cards, channel="admin")]


def test_a_duplicate_code_sent_by_site_a_is_reserved_by_digest(site_a, queued):
    remote, local = _shop_with_upstream_product(codes=1)
    code = _site_a_stock_codes(remote)[0]
    order = _paid_order(local)
    with schema_context("alpha"):
        # Between payment and purchase the same code lands in the vault under another product.
        other = Variant.objects.exclude(pk=local.pk).filter(upstream_id__isnull=True).first()
        if other is None:
            from tests.commerce import product_with_codes

            other = product_with_codes(codes=0)
        import_commit(variant=other, parsed=codes_parse_text(code), unit_cost=D("7"), source="paste")
        assert upstream_fulfil(order_id=order.pk) == FulfilOutcome.DELIVERED
        assert Card.objects.filter(digest=code_digest(code)).count() == 1  # stored once
    assert _delivered_codes(order) == [code]


def test_only_orders_whose_retry_is_due_are_requeued(site_a, queued):
    remote, local = _shop_with_upstream_product(balance=None)
    order = _paid_order(local)
    with schema_context("alpha"):
        assert upstream_orders_due() == []  # its own task was just queued
        Order.objects.filter(pk=order.pk).update(paid_at=timezone.now() - timedelta(minutes=5))
        assert upstream_orders_due() == [order.pk]  # ... and apparently lost
        upstream_fulfil(order_id=order.pk)
        assert upstream_orders_due() == []  # refused: waits for its back-off
        UpstreamPurchase.objects.update(next_attempt_at=timezone.now())
        assert upstream_orders_due() == [order.pk]


def test_back_off_doubles_from_30_seconds_up_to_30_minutes():
    assert [services._backoff_seconds(n) for n in (1, 2, 3, 4, 7, 20)] == [30, 60, 120, 240, 1800, 1800]


def test_a_branch_sees_only_its_own_purchases(site_a, queued):
    _, local = _shop_with_upstream_product()
    order = _paid_order(local)
    with schema_context("alpha"):
        upstream_fulfil(order_id=order.pk)
    with schema_context("public"):
        purchase = BranchPurchase.objects.get(branch__slug="alpha")
        assert purchase.branch == Branch.objects.get(slug="alpha")
    with schema_context("beta"):
        assert not UpstreamPurchase.objects.exists()


def test_a_cost_rise_at_site_a_within_the_customer_price_is_accepted_once_re_read(site_a, queued):
    remote, local = _shop_with_upstream_product(price="10.00")
    order = _paid_order(local)  # the customer paid 15 when Site A's cost was 10
    with schema_context("public"):
        Variant.objects.filter(pk=remote.pk).update(price=D("12.00"), updated=timezone.now())
    with schema_context("alpha"):
        assert upstream_fulfil(order_id=order.pk) == FulfilOutcome.DELIVERED
        purchase = UpstreamPurchase.objects.get()
        cost = Account.objects.get(code="cost_of_goods").natural_balance
    assert (purchase.expected_total, purchase.revision) == (D("12.00"), 1)  # a new request, a new key
    assert (cost, alpha_balance_at_site_a()) == (D("12.00"), D("88.00"))
    assert [m.subject for m in mail.outbox if not m.subject.startswith("Your codes")] == []  # no staff alert


def test_a_cost_rise_above_what_the_customer_paid_waits_for_the_staff(site_a, queued):
    remote, local = _shop_with_upstream_product(price="10.00")
    order = _paid_order(local)
    with schema_context("public"):
        Variant.objects.filter(pk=remote.pk).update(price=D("20.00"), updated=timezone.now())
    with schema_context("alpha"):
        assert upstream_fulfil(order_id=order.pk) == FulfilOutcome.WAITING
        purchase = UpstreamPurchase.objects.get()
    assert (purchase.status, purchase.last_error_code) == (UpstreamPurchase.Status.BLOCKED, "expected_total_mismatch")
    assert alpha_balance_at_site_a() == D("100.00")  # nothing bought at a loss
    assert len(mail.outbox) == 1


def test_two_workers_fulfilling_the_same_order_at_once_buy_and_deliver_once(site_a, queued):
    remote, local = _shop_with_upstream_product(codes=5)
    order = _paid_order(local, quantity=2)
    barrier = threading.Barrier(4)

    def run():
        try:
            with schema_context("alpha"):
                barrier.wait(timeout=10)
                return upstream_fulfil(order_id=order.pk)
        finally:
            db_connection.close()

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(lambda _: run(), range(4)))
    with schema_context("alpha"):
        for _ in range(3):  # a loser that saw "request in flight" is retried by Celery; do it here
            if Order.objects.get(pk=order.pk).status == S.DELIVERED:
                break
            upstream_fulfil(order_id=order.pk)
        assert Order.objects.get(pk=order.pk).status == S.DELIVERED
        assert CardAssignment.objects.filter(order_line__order_id=order.pk).count() == 2
        assert ledger_check() == []
    assert FulfilOutcome.DELIVERED in outcomes
    with schema_context("public"):
        assert BranchPurchase.objects.filter(branch__slug="alpha").count() == 1
    assert alpha_balance_at_site_a() == D("80.00")
    assert _delivered_codes(order) == _remote_codes(remote)
