"""Platform-collect money stays mirrored: the branch's ``prepaid_upstream`` equals its balance at Site A
after a customer pays twice (Site A credits the branch once and gives the second payment back) and
after the branch refunds a collected order (paid from its money at Site A, never through a channel
the branch does not own). Both schemas are checked with ``ledger_check``."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django_tenants.utils import schema_context

from branch_api.provider.collect import (
    branch_sale_duplicate_refund,
    branch_sale_duplicates_open,
    branch_sale_settle,
)
from branch_api.provider.models import BranchSale
from branch_api.upstream.services import upstream_fulfil
from conftest import host_client
from ledger.models import Transaction
from ledger.services import ledger_check
from orders.models import Order
from payments.errors import RefundRefused
from payments.models import PaymentAttempt, Refund
from payments.providers.sandbox import SandboxProvider
from payments.refunds import refund_create, refund_destinations
from payments.services import payment_callback_handle, payment_start
from tests.commerce import place

from .conftest import Queued, alpha_balance_at_site_a
from .test_platform_collect import _alpha_sells_site_a_product, _natural
from .test_platform_collect import collect_mode as collect_mode  # noqa: F401  (the fixture)

D = Decimal
R = Refund.Destination


@pytest.fixture
def refunds_queued(monkeypatch) -> Queued:
    """The second-payment refund task recorded, not sent to a broker (a session worker would run it
    at any moment); the tests run what it runs, when they choose."""
    from branch_api.provider.tasks import branch_sale_duplicate_refund_task

    queued = Queued()
    monkeypatch.setattr(branch_sale_duplicate_refund_task, "delay", queued)
    return queued


def _both_ledgers_balance() -> None:
    for schema in ("public", "alpha"):
        with schema_context(schema):
            assert ledger_check() == [], schema


def _mirrored() -> Decimal:
    """The branch's money at Site A, as the branch books it and as Site A does: they must agree."""
    with schema_context("alpha"):
        held = _natural("prepaid_upstream")
    assert alpha_balance_at_site_a() == held
    return held


def _paid_at_site_a(local, *, attempts: int = 1, customer=None) -> tuple[Order, list[PaymentAttempt], BranchSale]:
    """A branch order the customer paid ``attempts`` times through Site A's sandbox; the branch's order
    marked paid (the settle task's work)."""
    with schema_context("alpha"):
        order = place(local, 1, customer=customer)
        opened = [payment_start(order=order, provider_code="sandbox")[0] for _ in range(attempts)]
    with schema_context("public"):
        for attempt in opened:
            notification = SandboxProvider().notification(attempt=attempt)
            assert payment_callback_handle(provider_code="sandbox", data=notification) == (True, "ok")
        sale = BranchSale.objects.get(order_number=order.number)
    assert branch_sale_settle(sale_id=sale.pk)
    with schema_context("alpha"):
        order.refresh_from_db()
    assert order.paid_at is not None and order.payment_provider == "site_a"
    return order, opened, sale


def test_a_branch_order_paid_twice_is_credited_once_and_the_second_payment_given_back(collect_mode, refunds_queued):
    _remote, local = _alpha_sells_site_a_product(price="10.00", codes=2)
    order, (first, second), sale = _paid_at_site_a(local, attempts=2)

    with schema_context("public"):
        sale.refresh_from_db()
        assert sale.duplicate_owed == D("15.00")
        assert branch_sale_duplicates_open(sale) == [second]
        assert _natural("branch_sale_duplicates") == D("15.00")  # owed to the customer by Site A
        assert Transaction.objects.filter(idempotency_key=f"branch-sale:{first.pk}").exists()
        assert not Transaction.objects.filter(idempotency_key=f"branch-sale:{second.pk}").exists()
    with schema_context("alpha"):
        assert Transaction.objects.filter(kind="order_payment").count() == 1
        assert order.events.filter(to_status=Order.Status.PAID).count() == 1
    assert _mirrored() == D("15.00")  # one sale of 15 on both sides, not 30 at Site A
    _both_ledgers_balance()

    # The task queued after the commit: the sandbox refunds the second payment through the channel, once.
    assert refunds_queued.order_ids == [second.pk]
    with schema_context("public"):
        assert branch_sale_duplicate_refund(attempt_id=second.pk)
        assert branch_sale_duplicate_refund(attempt_id=second.pk)
        assert not branch_sale_duplicate_refund(attempt_id=first.pk)  # the credited payment is not owed
        sale.refresh_from_db()
        assert sale.duplicate_owed == D("0.00") and branch_sale_duplicates_open(sale) == []
        assert _natural("branch_sale_duplicates") == D("0.00")
        assert _natural("payment_clearing") == D("15.00")  # 30 taken, 15 given back
        assert Transaction.objects.filter(idempotency_key__startswith="branch-sale-duplicate-refund:").count() == 1
    assert _mirrored() == D("15.00")
    _both_ledgers_balance()


def test_site_a_staff_record_a_second_payment_refunded_in_the_gateway(collect_mode, refunds_queued):
    _remote, local = _alpha_sells_site_a_product(price="10.00", codes=2)
    _order, (_first, second), sale = _paid_at_site_a(local, attempts=2)

    from core.management.commands.seed_demo import demo_admin_ensure

    demo_admin_ensure("root@site-a.test", "root-pass-12345")
    admin = host_client("localhost")
    admin.post("/accounts/login/", {"login": "root@site-a.test", "password": "root-pass-12345"})
    listing = admin.get("/admin/branch_provider/branchsale/")
    assert listing.status_code == 200 and b"15.00" in listing.content
    response = admin.post(
        "/admin/branch_provider/branchsale/",
        {"action": "duplicates_refunded_outside", "_selected_action": [sale.pk]},
    )
    assert response.status_code == 302
    with schema_context("public"):
        sale.refresh_from_db()
        assert sale.duplicate_owed == D("0.00")
        refunded = Transaction.objects.get(idempotency_key=f"branch-sale-duplicate-refund:{second.pk}")
        assert "refunded outside" in refunded.memo
    assert _mirrored() == D("15.00")
    _both_ledgers_balance()


def test_a_branch_refund_of_a_collected_order_is_paid_from_its_money_at_site_a(collect_mode, refunds_queued):
    _remote, local = _alpha_sells_site_a_product(price="10.00", codes=2)
    with schema_context("alpha"):
        name = f"c-{uuid.uuid4().hex[:8]}"
        customer = get_user_model().objects.create_user(username=name, email=f"{name}@example.test", password="x")
    order, _attempts, _sale = _paid_at_site_a(local, customer=customer)
    with schema_context("alpha"):
        upstream_fulfil(order_id=order.pk)  # the purchase at cost: −10 on both sides
        order.refresh_from_db()
        assert order.status == Order.Status.DELIVERED
    assert _mirrored() == D("5.00")

    with schema_context("alpha"):
        staff = get_user_model().objects.filter(is_staff=True).first()
        # Site A's channel is not the branch's: no refund "to the original channel".
        assert refund_destinations(order) == [R.WALLET, R.OUTSIDE]
        with pytest.raises(RefundRefused) as refused:
            refund_create(order_id=order.pk, amount="1.00", destination=R.CHANNEL, staff=staff, reason="channel")
        assert refused.value.code == "destination_unavailable"

        # Outside: Site A gives it back through its channel, from the branch's balance there.
        refund_create(order_id=order.pk, amount="4.00", destination=R.OUTSIDE, staff=staff, reason="partly")
        assert (_natural("refunds"), _natural("payment_clearing")) == (D("4.00"), D("0.00"))
    assert _mirrored() == D("1.00")
    with schema_context("public"):
        assert _natural("payment_clearing") == D("11.00")  # 15 collected, 4 given back
    _both_ledgers_balance()

    with schema_context("alpha"):
        # More than the branch still has at Site A: refused, nothing booked on either side.
        with pytest.raises(RefundRefused) as short:
            refund_create(order_id=order.pk, amount="2.00", destination=R.OUTSIDE, staff=staff, reason="more")
        assert short.value.code == "balance_insufficient"
        assert Refund.objects.filter(order=order).count() == 1
        # The wallet is the branch's own liability: Site A is not involved.
        refund_create(order_id=order.pk, amount="11.00", destination=R.WALLET, staff=staff, reason="rest")
        order.refresh_from_db()
        assert order.status == Order.Status.REFUNDED
        assert _natural(f"wallet:{customer.pk}") == D("11.00")
    assert _mirrored() == D("1.00")
    _both_ledgers_balance()


def test_a_payment_confirmed_by_hand_in_the_branch_is_its_money_at_site_a(collect_mode, refunds_queued):
    """补单 in a branch Site A collects for: the customer paid through Site A's channel and no
    notification came. The branch books the sale to ``prepaid_upstream`` (not its own payment clearing,
    which no channel of its own fills), and when Site A's notification comes after all, Site A credits
    the branch once and the mirror is whole again; a refund by hand is paid from the balance there."""
    from payments.manual import confirmation_password_set, payment_confirm_manually

    _remote, local = _alpha_sells_site_a_product(price="10.00", codes=2)
    with schema_context("alpha"):
        order = place(local, 1)
        attempt, _url = payment_start(order=order, provider_code="sandbox")  # Site A's attempt, never notified
        confirmation_password_set(raw_password="confirm-secret-42")
        staff = get_user_model().objects.filter(is_staff=True).first()
        payment_confirm_manually(
            order_id=order.pk,
            staff=staff,
            confirmation_password="confirm-secret-42",
            reason="Paid per Site A, callback lost",
            gateway_reference="SBX-42",
        )
        order.refresh_from_db()
        assert order.paid_at is not None and order.payment_provider == "site_a"
        assert (_natural("prepaid_upstream"), _natural("payment_clearing")) == (D("15.00"), D("0.00"))
        assert "confirmed by hand: SBX-42" in order.events.get(to_status=Order.Status.PAID).message
    assert alpha_balance_at_site_a() == D("0.00")  # Site A has not heard of the payment yet

    with schema_context("public"):
        notification = SandboxProvider().notification(attempt=attempt)
        assert payment_callback_handle(provider_code="sandbox", data=notification) == (True, "ok")
        sale = BranchSale.objects.get(order_number=order.number)
    assert branch_sale_settle(sale_id=sale.pk)  # already paid: nothing more in the branch
    with schema_context("alpha"):
        assert Transaction.objects.filter(kind="order_payment").count() == 1
    assert _mirrored() == D("15.00")

    with schema_context("alpha"):
        upstream_fulfil(order_id=order.pk)
        refund_create(order_id=order.pk, amount="5.00", destination=R.OUTSIDE, staff=staff, reason="by hand")
    assert _mirrored() == D("0.00")
    _both_ledgers_balance()
