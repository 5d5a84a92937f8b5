"""Stripe's refund webhooks for branch orders Site A collected (platform-collect): a refund made in Site
A's Stripe dashboard is booked once on both sides (the branch's ``prepaid_upstream`` and its balance at
Site A) and recorded on the branch's order; a refund the branch already recorded by hand is not booked
again; one Stripe fails later is booked back; the refund of a second payment is booked once, by our
task or by the webhook. Events are signed with the library's own helper and sent to Site A's real
callback URL; the Stripe API is the local fake of ``payments/tests/test_stripe.py``."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
import stripe
from django.contrib.auth import get_user_model
from django.db import connection
from django_tenants.utils import schema_context

from branch_api.provider.collect import branch_sale_duplicate_refund, branch_sale_settle
from branch_api.provider.models import BranchSale, BranchSaleRefund
from branch_api.upstream.services import upstream_fulfil
from conftest import host_client
from ledger.models import Transaction
from orders.models import Order
from payments.models import PaymentAttempt, PaymentCallback, Refund
from payments.refunds import COLLECTED_DASHBOARD_REASON, order_refundable_amount, refund_create
from payments.services import payment_start
from payments.tests.test_stripe import CALLBACK, WEBHOOK_SECRET, _configure, _event
from payments.tests.test_stripe import api as api  # noqa: F401  (the fake Stripe API fixture)
from payments.tests.test_stripe_refund_events import _charge, _refund_obj, _signed
from tests.commerce import place

from .test_platform_collect import _alpha_sells_site_a_product, _natural
from .test_platform_collect import collect_mode as collect_mode  # noqa: F401  (the fixture)
from .test_platform_collect_money import _both_ledgers_balance, _mirrored
from .test_platform_collect_money import refunds_queued as refunds_queued  # noqa: F401  (the fixture)

D = Decimal
S = Order.Status
R = Refund.Destination


@pytest.fixture
def emails_queued(monkeypatch) -> list[tuple[int, str]]:
    """The customer's refund e-mail task recorded with the schema it is queued in (the schema it
    would run in), not sent to a broker."""
    from orders.tasks import order_refund_email_task

    queued: list[tuple[int, str]] = []
    monkeypatch.setattr(
        order_refund_email_task, "delay", lambda refund_id: queued.append((refund_id, connection.schema_name))
    )
    return queued


def _to_site_a(payload: str):
    header = stripe.WebhookSignature.generate_signature_header(payload, WEBHOOK_SECRET)
    return host_client("localhost").post(
        CALLBACK, data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )


def _codes(count: int) -> list[str]:
    with schema_context("public"):
        codes = PaymentCallback.objects.filter(provider="stripe").order_by("pk").values_list("error_code", flat=True)
        return list(codes)[-count:]


@pytest.fixture
def local(collect_mode, api):
    """Alpha in platform-collect mode selling a Site A product (cost 10) at 15; Site A takes cards
    through its Stripe channel (the local fake)."""
    _configure(api.url, "public")
    return _alpha_sells_site_a_product(price="10.00", codes=3)[1]


def _paid_through_stripe(local, *, attempts: int = 1, customer=None) -> tuple[Order, list[PaymentAttempt]]:
    """A 15.00 branch order the customer paid ``attempts`` times through Site A's Stripe channel, the
    branch's order marked paid and bought at cost (Site A cost 10: the mirror grows by 5)."""
    with schema_context("alpha"):
        order = place(local, 1, customer=customer)
        opened = [payment_start(order=order, provider_code="stripe")[0] for _ in range(attempts)]
    for attempt in opened:
        with schema_context("public"):
            attempt.refresh_from_db()
        paid = _event(attempt, event_id=f"evt_pay_{attempt.pk}", payment_intent=f"pi_{attempt.external_id}")
        assert _to_site_a(paid).status_code == 200
    with schema_context("public"):
        sale = BranchSale.objects.get(order_number=order.number)
        for attempt in opened:
            attempt.refresh_from_db()
            assert attempt.gateway_reference == f"pi_{attempt.external_id}"
    assert branch_sale_settle(sale_id=sale.pk)
    with schema_context("alpha"):
        upstream_fulfil(order_id=order.pk)  # the purchase at cost: −10 on both sides
        order.refresh_from_db()
    assert order.status == S.DELIVERED and order.payment_provider == "site_a"
    return order, opened


def test_a_refund_made_in_site_as_stripe_dashboard_is_booked_on_both_sides_once(local, api, emails_queued):
    order, [attempt] = _paid_through_stripe(local)
    assert _mirrored() == D("5.00")
    dashboard = _refund_obj(attempt, refund_id="re_dash_a", cents=500)
    charge = _charge(attempt, refunded_cents=500, refunds=[dashboard])
    response = _to_site_a(_signed("evt_ra_1", "charge.refunded", charge))
    assert (response.status_code, response.content) == (200, b"ok")
    # Stripe also sends refund.created for it, and retries: neither books it again.
    assert _to_site_a(_signed("evt_ra_2", "refund.created", dashboard)).status_code == 200
    assert _to_site_a(_signed("evt_ra_1", "charge.refunded", charge)).status_code == 200
    # The same refund with another amount is not believed.
    other = _refund_obj(attempt, refund_id="re_dash_a", cents=600)
    assert _to_site_a(_signed("evt_ra_3", "refund.updated", other)).status_code == 400
    assert _codes(4) == ["", "", "event_already_applied", "amount_mismatch"]

    with schema_context("alpha"):
        [refund] = Refund.objects.filter(order=order)
        assert (refund.destination, refund.provider, refund.status, refund.staff) == (
            R.CHANNEL,
            "site_a",
            "succeeded",
            None,
        )
        assert (refund.amount, refund.gateway_refund_id) == (D("5.00"), "re_dash_a")
        assert refund.reason == f"{COLLECTED_DASHBOARD_REASON} (stripe re_dash_a)"
        order.refresh_from_db()
        assert order.status == S.PARTIALLY_REFUNDED and order_refundable_amount(order) == D("10.00")
        assert _natural("refunds") == D("5.00") and _natural("payment_clearing") == D("0.00")
        assert Transaction.objects.filter(kind="refund").count() == 1
    assert _mirrored() == D("0.00")  # 5 paid back from the branch's money at Site A, on both sides
    with schema_context("public"):
        [seen] = BranchSaleRefund.objects.all()
        assert (seen.amount, seen.booked, seen.refund_token) == (D("5.00"), D("5.00"), refund.token)
        assert _natural("payment_clearing") == D("10.00")  # 15 collected, 5 given back
        assert Transaction.objects.filter(idempotency_key__startswith="branch-refund:").count() == 1
    assert emails_queued == [(refund.pk, "alpha")]  # the branch's customer, from the branch's schema
    _both_ledgers_balance()

    # Site A's staff see it on the branch sale.
    from core.management.commands.seed_demo import demo_admin_ensure

    demo_admin_ensure("root@site-a.test", "root-pass-12345")
    admin = host_client("localhost")
    admin.post("/accounts/login/", {"login": "root@site-a.test", "password": "root-pass-12345"})
    page = admin.get(f"/admin/branch_provider/branchsale/{seen.sale_id}/change/")
    assert page.status_code == 200 and b"re_dash_a" in page.content


def test_a_refund_the_branch_recorded_by_hand_is_not_booked_again(local, api, emails_queued):
    order, [attempt] = _paid_through_stripe(local)
    with schema_context("alpha"):
        for amount in ("3.00", "1.00"):  # the branch asks Site A to refund 4 in two goes
            refund_create(order_id=order.pk, amount=amount, destination=R.OUTSIDE, staff=None, reason="by hand")
    assert _mirrored() == D("1.00")

    # Site A's staff refund the 4 in Stripe's dashboard, plus 1 nobody recorded.
    whole = _refund_obj(attempt, refund_id="re_hand_1", cents=500)
    assert _to_site_a(_signed("evt_rb_1", "refund.created", whole)).status_code == 200
    charge = _charge(attempt, refunded_cents=500, refunds=[whole])
    assert _to_site_a(_signed("evt_rb_2", "charge.refunded", charge)).status_code == 200
    with schema_context("alpha"):
        refunds = Refund.objects.filter(order=order).order_by("pk")
        assert [(r.destination, r.amount) for r in refunds] == [
            (R.OUTSIDE, D("3.00")),
            (R.OUTSIDE, D("1.00")),
            (R.CHANNEL, D("1.00")),
        ]
        # The branch owner sees on the order that Site A's gateway made the refund recorded by hand.
        note = order.events.get(message__contains="not booked again").message
        assert "refunded 4.00" in note and "re_hand_1" in note
        order.refresh_from_db()
        assert order_refundable_amount(order) == D("10.00")
    assert _mirrored() == D("0.00")  # 5 refunded, 5 booked: the 4 by hand and the 1 beyond
    with schema_context("public"):
        seen = BranchSaleRefund.objects.get()
        assert (seen.amount, seen.booked) == (D("5.00"), D("1.00"))
    assert len(emails_queued) == 3
    _both_ledgers_balance()


def test_a_dashboard_refund_beyond_what_is_left_or_the_branchs_balance_is_refused(local, api, emails_queued):
    with schema_context("alpha"):
        name = f"c-{uuid.uuid4().hex[:8]}"
        customer = get_user_model().objects.create_user(username=name, email=f"{name}@example.test", password="x")
    order, [attempt] = _paid_through_stripe(local, customer=customer)
    with schema_context("alpha"):
        # To the customer's wallet: the branch's own money, Site A is not involved.
        refund_create(order_id=order.pk, amount="8.00", destination=R.WALLET, staff=None, reason="wallet")
    assert _mirrored() == D("5.00")
    too_much = _refund_obj(attempt, refund_id="re_big", cents=800)  # 7.00 is left to refund
    assert _to_site_a(_signed("evt_rc_1", "refund.created", too_much)).status_code == 400
    short = _refund_obj(attempt, refund_id="re_short", cents=600)  # left, but the branch has 5 at Site A
    assert _to_site_a(_signed("evt_rc_2", "refund.created", short)).status_code == 400
    assert _codes(2) == ["amount_exceeds_refundable", "balance_insufficient"]
    with schema_context("alpha"):
        assert Refund.objects.filter(order=order).count() == 1  # the wallet one
        order.refresh_from_db()
        assert order.status == S.PARTIALLY_REFUNDED and order_refundable_amount(order) == D("7.00")
    with schema_context("public"):
        assert not BranchSaleRefund.objects.exists()  # refused: Stripe retries, nothing is kept
    assert _mirrored() == D("5.00")
    _both_ledgers_balance()


def test_a_dashboard_refund_stripe_fails_later_is_booked_back_on_both_sides(local, api, emails_queued):
    order, [attempt] = _paid_through_stripe(local)
    made = _refund_obj(attempt, refund_id="re_fail_1", cents=500, status="pending")
    assert _to_site_a(_signed("evt_rd_1", "refund.created", made)).status_code == 200
    assert _mirrored() == D("0.00")
    failed = {**made, "status": "failed", "failure_reason": "expired_or_canceled_card"}
    assert _to_site_a(_signed("evt_rd_2", "refund.failed", failed)).status_code == 200
    assert _to_site_a(_signed("evt_rd_3", "refund.updated", failed)).status_code == 200  # the same news again
    # An older snapshot arriving last changes nothing: a failed refund never succeeds.
    assert _to_site_a(_signed("evt_rd_4", "refund.updated", {**made, "status": "succeeded"})).status_code == 200
    with schema_context("alpha"):
        [refund] = Refund.objects.filter(order=order)
        assert refund.status == "failed" and "expired_or_canceled_card" in refund.error
        order.refresh_from_db()
        assert order.status == S.DELIVERED and order_refundable_amount(order) == D("15.00")
        assert (_natural("refunds"), _natural("prepaid_upstream")) == (D("0.00"), D("5.00"))
    assert _mirrored() == D("5.00")
    with schema_context("public"):
        assert BranchSaleRefund.objects.get().gateway_status == "failed"
        assert Transaction.objects.filter(idempotency_key__startswith="branch-refund-reversed:").count() == 1
    # A refund Stripe reports failed before we heard of it moved no money, and is never booked.
    never = _refund_obj(attempt, refund_id="re_fail_2", cents=300, status="failed")
    assert _to_site_a(_signed("evt_rd_5", "refund.failed", never)).status_code == 200
    assert _to_site_a(_signed("evt_rd_6", "refund.created", {**never, "status": "pending"})).status_code == 200
    with schema_context("alpha"):
        assert Refund.objects.filter(order=order).count() == 1
    assert _mirrored() == D("5.00")
    _both_ledgers_balance()


def test_the_refund_of_a_second_payment_by_our_task_is_booked_once_when_stripe_reports_it(
    local, api, refunds_queued, emails_queued
):
    order, [first, second] = _paid_through_stripe(local, attempts=2)
    assert refunds_queued.order_ids == [second.pk]
    with schema_context("public"):
        assert branch_sale_duplicate_refund(attempt_id=second.pk)  # the task's work: Stripe's API refunds it
    [made] = api.refunds.values()
    assert (made["payment_intent"], made["amount"]) == (f"pi_{second.external_id}", 1500)
    notice = _refund_obj(second, refund_id=made["id"], cents=1500, metadata=made["metadata"])
    assert _to_site_a(_signed("evt_re_1", "refund.created", notice)).status_code == 200
    charge = _charge(second, refunded_cents=1500, refunds=[notice])
    assert _to_site_a(_signed("evt_re_2", "charge.refunded", charge)).status_code == 200
    with schema_context("public"):
        assert Transaction.objects.filter(idempotency_key__startswith="branch-sale-duplicate-refund:").count() == 1
        assert _natural("branch_sale_duplicates") == D("0.00")
        assert not BranchSaleRefund.objects.exists()  # not a refund of the branch's order
    with schema_context("alpha"):
        assert not Refund.objects.filter(order=order).exists()
        order.refresh_from_db()
        assert order.status == S.DELIVERED
    assert _mirrored() == D("5.00") and emails_queued == []
    _both_ledgers_balance()


def test_a_second_payment_refunded_in_stripes_dashboard_is_booked_from_the_webhook_and_not_refunded_again(
    local, api, refunds_queued, emails_queued
):
    _order, [_first, second] = _paid_through_stripe(local, attempts=2)
    partial = _refund_obj(second, refund_id="re_dup_part", cents=500)
    assert _to_site_a(_signed("evt_rf_1", "refund.created", partial)).status_code == 400  # only whole: staff look
    whole = _refund_obj(second, refund_id="re_dup_whole", cents=1500)
    assert _to_site_a(_signed("evt_rf_2", "refund.created", whole)).status_code == 200
    assert _codes(2) == ["amount_mismatch", ""]
    with schema_context("public"):
        booked = Transaction.objects.get(idempotency_key=f"branch-sale-duplicate-refund:{second.pk}")
        assert "refunded via stripe re_dup_whole" in booked.memo
        # The task queued when it was paid runs afterwards: already given back, nothing is sent to Stripe.
        assert branch_sale_duplicate_refund(attempt_id=second.pk)
        assert BranchSale.objects.get().duplicate_owed == D("0.00")
    assert not api.refunds
    assert _mirrored() == D("5.00")
    _both_ledgers_balance()
