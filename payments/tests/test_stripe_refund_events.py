"""Stripe's refund webhooks: a refund made in Stripe's dashboard is recorded and booked once, a refund
of ours that Stripe fails later is booked back, a pending one is settled. Events are signed with the
library's own helper and sent to the real callback URL; the Stripe API is the local fake of test_stripe."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.core import mail  # noqa: F401  (the locmem outbox is reset per test)
from django_tenants.utils import schema_context

from ledger.models import Account, Transaction
from ledger.services import ledger_check
from orders.models import Order
from payments.errors import RefundOutcomeUnknown
from payments.models import PaymentAttempt, PaymentCallback, Refund
from payments.refunds import DASHBOARD_REASON, order_refundable_amount, refund_create, refund_submit
from payments.tests.test_refunds import _staff
from payments.tests.test_stripe import _configure, _event, _send, _start
from payments.tests.test_stripe import api as api  # noqa: F401  (the fake Stripe API fixture)

S = Order.Status
D = Refund.Destination


def _balance(code: str) -> Decimal:
    account = Account.objects.filter(code=code).first()
    return account.balance if account else Decimal("0.00")


def _paid(api, capture) -> tuple[Order, PaymentAttempt]:
    """A 15.00 order paid through Stripe, its PaymentIntent kept on the attempt, delivered."""
    _configure(api.url)
    order, attempt, _url = _start()
    with schema_context("alpha"):
        attempt.refresh_from_db()
    with capture(execute=False):
        assert _send(_event(attempt, payment_intent=f"pi_{attempt.external_id}")).status_code == 200
    with schema_context("alpha"):
        order.refresh_from_db()
        attempt.refresh_from_db()
    assert order.status == S.DELIVERED and attempt.gateway_reference == f"pi_{attempt.external_id}"
    return order, attempt


def _refund_obj(attempt, *, refund_id: str, cents: int, status: str = "succeeded", **extra) -> dict:
    return {
        "id": refund_id,
        "object": "refund",
        "amount": cents,
        "currency": attempt.currency.lower(),
        "payment_intent": attempt.gateway_reference,
        "charge": f"ch_{attempt.external_id}",
        "status": status,
        "metadata": {},
        **extra,
    }


def _signed(event_id: str, type_: str, obj: dict) -> str:
    return json.dumps({"id": event_id, "object": "event", "type": type_, "livemode": False, "data": {"object": obj}})


def _charge(attempt, *, refunded_cents: int, refunds: list[dict] | None) -> dict:
    charge = {
        "id": f"ch_{attempt.external_id}",
        "object": "charge",
        "amount": int(attempt.amount * 100),
        "amount_refunded": refunded_cents,
        "currency": attempt.currency.lower(),
        "payment_intent": attempt.gateway_reference,
        "refunded": refunded_cents >= int(attempt.amount * 100),
    }
    if refunds is not None:
        charge["refunds"] = {"object": "list", "data": refunds, "has_more": False}
    return charge


@pytest.mark.django_db
def test_a_dashboard_refund_is_recorded_booked_and_moves_the_order_once(api, django_capture_on_commit_callbacks):
    order, attempt = _paid(api, django_capture_on_commit_callbacks)
    dashboard = _refund_obj(attempt, refund_id="re_dash_1", cents=500)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = _send(
            _signed("evt_r1", "charge.refunded", _charge(attempt, refunded_cents=500, refunds=[dashboard]))
        )
        assert (response.status_code, response.content) == (200, b"ok")
        # Stripe also sends refund.created for it, and retries: neither books it again.
        assert _send(_signed("evt_r2", "refund.created", dashboard)).status_code == 200
        assert (
            _send(
                _signed("evt_r1", "charge.refunded", _charge(attempt, refunded_cents=500, refunds=[dashboard]))
            ).status_code
            == 200
        )
    with schema_context("alpha"):
        [refund] = Refund.objects.all()
        assert (refund.destination, refund.provider, refund.status) == (D.CHANNEL, "stripe", "succeeded")
        assert (refund.amount, refund.gateway_refund_id, refund.reason) == (
            Decimal("5.00"),
            "re_dash_1",
            DASHBOARD_REASON,
        )
        assert refund.staff is None
        order.refresh_from_db()
        assert order.status == S.PARTIALLY_REFUNDED
        assert order_refundable_amount(order) == Decimal("10.00")
        assert Transaction.objects.filter(kind="refund").count() == 1
        assert (_balance("refunds"), _balance("payment_clearing")) == (Decimal("5.00"), Decimal("10.00"))
        assert ledger_check() == []
        codes = list(
            PaymentCallback.objects.filter(provider="stripe").order_by("pk").values_list("error_code", flat=True)
        )
    assert codes == ["", "", "", "event_already_applied"]
    assert len(callbacks) == 1  # one customer e-mail


@pytest.mark.django_db
def test_a_charge_refunded_event_without_its_refunds_asks_stripe_for_them(api, django_capture_on_commit_callbacks):
    order, attempt = _paid(api, django_capture_on_commit_callbacks)
    charge_id = f"ch_{attempt.external_id}"
    api.charge_refunds[charge_id] = [_refund_obj(attempt, refund_id="re_dash_2", cents=1500)]
    with django_capture_on_commit_callbacks(execute=False):
        assert (
            _send(_signed("evt_r3", "charge.refunded", _charge(attempt, refunded_cents=1500, refunds=None))).status_code
            == 200
        )
    assert any(r["path"] == f"/v1/refunds?charge={charge_id}&limit=100" for r in api.requests)
    with schema_context("alpha"):
        assert Refund.objects.get().gateway_refund_id == "re_dash_2"
        order.refresh_from_db()
        assert order.status == S.REFUNDED and ledger_check() == []


@pytest.mark.django_db
def test_a_refund_of_ours_that_stripe_fails_later_is_booked_back(api, django_capture_on_commit_callbacks):
    order, attempt = _paid(api, django_capture_on_commit_callbacks)
    with schema_context("alpha"), django_capture_on_commit_callbacks(execute=False):
        refund = refund_create(order_id=order.pk, amount="15.00", destination=D.CHANNEL, staff=_staff(), reason="dup")
        assert refund.status == "succeeded" and _balance("payment_clearing") == Decimal("0.00")
    [made] = api.refunds.values()
    assert made["metadata"] == {"token": attempt.token, "refund": refund.token}
    failed = _refund_obj(
        attempt, refund_id=made["id"], cents=1500, status="failed", failure_reason="expired_or_canceled_card",
        metadata=made["metadata"],
    )  # fmt: skip
    with django_capture_on_commit_callbacks(execute=False):
        assert _send(_signed("evt_f1", "refund.failed", failed)).status_code == 200
        assert _send(_signed("evt_f2", "refund.updated", failed)).status_code == 200  # the same news again
    with schema_context("alpha"):
        refund.refresh_from_db()
        assert (refund.status, refund.gateway_status) == ("failed", "failed")
        assert "expired_or_canceled_card" in refund.error
        order.refresh_from_db()
        assert order.status == S.DELIVERED  # nothing is refunded any more
        event = order.events.latest("pk")
        assert event.to_status == S.DELIVERED and "failed" in event.message
        assert order_refundable_amount(order) == Decimal("15.00")  # the amount is free again
        assert not order.lines.get().assignments.filter(refunded_at__isnull=False).exists()
        reversals = Transaction.objects.filter(idempotency_key=f"refund-reversed:{refund.token}")
        assert reversals.count() == 1
        assert (_balance("refunds"), _balance("payment_clearing")) == (Decimal("0.00"), Decimal("15.00"))
        assert ledger_check() == []
        # Staff can refund it again, and it is booked once more.
        with django_capture_on_commit_callbacks(execute=False):
            again = refund_create(
                order_id=order.pk, amount="15.00", destination=D.OUTSIDE, staff=_staff(), reason="again"
            )
        assert again.status == "succeeded"
        order.refresh_from_db()
        assert order.status == S.REFUNDED and ledger_check() == []


@pytest.mark.django_db
def test_a_pending_refund_of_ours_is_settled_by_its_webhook(api, django_capture_on_commit_callbacks):
    order, attempt = _paid(api, django_capture_on_commit_callbacks)
    api.refund_error = (500, {"error": {"type": "api_error", "message": "Something went wrong."}})
    with schema_context("alpha"), django_capture_on_commit_callbacks(execute=False):
        with pytest.raises(RefundOutcomeUnknown):
            refund_create(order_id=order.pk, amount="6.00", destination=D.CHANNEL, staff=_staff(), reason="part")
        pending = Refund.objects.get()
    # Stripe made it after all; its webhook names our refund's token (no id of it is stored yet).
    made = _refund_obj(
        attempt, refund_id="re_late_1", cents=600, metadata={"token": attempt.token, "refund": pending.token}
    )
    with django_capture_on_commit_callbacks(execute=False):
        assert _send(_signed("evt_p1", "refund.updated", made)).status_code == 200
    api.refund_error = None
    with schema_context("alpha"):
        pending.refresh_from_db()
        assert (pending.status, pending.gateway_refund_id) == ("succeeded", "re_late_1")
        assert refund_submit(refund_id=pending.pk).status == "succeeded"  # nothing more is sent
        assert not api.refunds
        order.refresh_from_db()
        assert order.status == S.PARTIALLY_REFUNDED
        assert Refund.objects.count() == 1 and Transaction.objects.filter(kind="refund").count() == 1
        assert ledger_check() == []


@pytest.mark.django_db
def test_refund_events_that_do_not_fit_change_nothing_and_are_retried(api, django_capture_on_commit_callbacks):
    order, attempt = _paid(api, django_capture_on_commit_callbacks)
    with schema_context("alpha"), django_capture_on_commit_callbacks(execute=False):
        refund_create(order_id=order.pk, amount="10.00", destination=D.OUTSIDE, staff=_staff(), reason="outside")
    too_much = _refund_obj(attempt, refund_id="re_dash_3", cents=600)  # only 5.00 is left
    unknown = _refund_obj(attempt, refund_id="re_dash_4", cents=100, payment_intent="pi_someone_else")
    with django_capture_on_commit_callbacks(execute=False):
        assert _send(_signed("evt_x1", "refund.created", too_much)).status_code == 400
        assert _send(_signed("evt_x2", "refund.created", unknown)).status_code == 400
        assert (
            _send(
                _signed(
                    "evt_x3", "refund.failed", _refund_obj(attempt, refund_id="re_dash_5", cents=100, status="failed")
                )
            ).status_code
            == 200
        )
    with schema_context("alpha"):
        codes = list(
            PaymentCallback.objects.filter(provider="stripe").order_by("pk").values_list("error_code", flat=True)
        )
        assert codes[-3:] == ["amount_exceeds_refundable", "unknown_payment", ""]
        assert Refund.objects.count() == 1  # only the outside one
        order.refresh_from_db()
        assert order.status == S.PARTIALLY_REFUNDED and ledger_check() == []


def _paid_twice(api, capture) -> tuple[Order, PaymentAttempt]:
    """A 15.00 order with two Stripe Checkout sessions (two tabs), both paid: the second payment's
    attempt, with its PaymentIntent kept."""
    from payments.services import payment_start

    _configure(api.url)
    order, first, _url = _start()
    with schema_context("alpha"):
        second, _url = payment_start(order=order, provider_code="stripe")
        first.refresh_from_db()
    with capture(execute=False):
        assert _send(_event(first, payment_intent=f"pi_{first.external_id}")).status_code == 200
        paid_again = _event(second, event_id="evt_second", payment_intent=f"pi_{second.external_id}")
        assert _send(paid_again).status_code == 200
    with schema_context("alpha"):
        order.refresh_from_db()
        second.refresh_from_db()
        assert order.status == S.DELIVERED and order.lines.get().assignments.count() == 1
        assert _balance("customer_payments_owed") == Decimal("-15.00")
    return order, second


@pytest.mark.django_db
def test_a_second_payment_refunded_by_our_task_and_then_notified_is_not_a_refund_of_the_order(
    api, django_capture_on_commit_callbacks
):
    """The customer paid twice through Stripe: the second payment is refunded whole through Stripe's
    API by the task, and Stripe's webhooks about that refund book nothing more and leave the order
    (paid once, delivered) alone."""
    from payments.tasks import duplicate_payment_refund_task

    order, second = _paid_twice(api, django_capture_on_commit_callbacks)
    with schema_context("alpha"):
        assert duplicate_payment_refund_task(second.pk) is True  # Stripe's API (the local fake) refunds it
    [refunded] = [r for r in api.requests if r["path"] == "/v1/refunds"]
    assert (refunded["form"]["payment_intent"], refunded["form"]["amount"]) == (f"pi_{second.external_id}", "1500")
    notice = _refund_obj(second, refund_id="re_test_1", cents=1500)
    assert _send(_signed("evt_r_second", "refund.created", notice)).status_code == 200
    charge = _charge(second, refunded_cents=1500, refunds=[notice])
    assert _send(_signed("evt_r_second_2", "charge.refunded", charge)).status_code == 200
    with schema_context("alpha"):
        order.refresh_from_db()
        assert order.status == S.DELIVERED and not Refund.objects.exists()
        assert _balance("customer_payments_owed") == Decimal("0.00") and _balance("refunds") == Decimal("0.00")
        assert Transaction.objects.filter(idempotency_key__startswith="duplicate-payment-refund:").count() == 1
        assert ledger_check() == []


@pytest.mark.django_db
def test_a_second_payment_refunded_in_stripes_dashboard_is_booked_from_the_webhook(
    api, django_capture_on_commit_callbacks
):
    order, second = _paid_twice(api, django_capture_on_commit_callbacks)  # the refund task never runs here
    partial = _refund_obj(second, refund_id="re_part", cents=500)
    assert _send(_signed("evt_part", "refund.created", partial)).status_code == 400  # only whole: staff look
    whole = _refund_obj(second, refund_id="re_whole", cents=1500)
    assert _send(_signed("evt_whole", "refund.created", whole)).status_code == 200
    with schema_context("alpha"):
        order.refresh_from_db()
        assert order.status == S.DELIVERED and not Refund.objects.exists()
        booked = Transaction.objects.get(idempotency_key=f"duplicate-payment-refund:{second.pk}")
        assert "refunded via stripe re_whole" in booked.memo
        assert _balance("customer_payments_owed") == Decimal("0.00")
        assert ledger_check() == []
