"""Payment callbacks are trusted only when signature, merchant, attempt, amount, currency and status match."""

from decimal import Decimal

import pytest
from django_tenants.utils import schema_context

from conftest import host_client
from orders.models import Order
from payments.models import PaymentAttempt, PaymentCallback
from payments.providers.sandbox import sandbox_sign
from payments.services import payment_callback_handle
from tests.commerce import place, product_with_codes, sandbox_notification

pytestmark = pytest.mark.django_db


def _resigned(data: dict, **changes) -> dict:
    data = {**data, **changes}
    data["signature"] = sandbox_sign(data)
    return data


def _pending_order_and_notification(schema="alpha"):
    with schema_context(schema):
        order = place(product_with_codes(codes=2), 1)
        return order, sandbox_notification(order)


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda d: {**d, "signature": "0" * 64}, "bad_signature"),
        (lambda d: {**d, "amount": "0.01"}, "bad_signature"),  # changed after signing
        (lambda d: _resigned(d, amount="0.01"), "amount_mismatch"),
        (lambda d: _resigned(d, currency="EUR"), "currency_mismatch"),
        (lambda d: _resigned(d, merchant="sandbox-beta"), "wrong_merchant"),
        (lambda d: _resigned(d, token="no-such-payment"), "unknown_payment"),
        (lambda d: _resigned(d, status="maybe"), "bad_status"),
        (lambda d: {k: v for k, v in d.items() if k != "signature"}, "bad_signature"),
    ],
)
def test_forged_or_mismatched_callbacks_change_nothing(tamper, reason):
    order, notification = _pending_order_and_notification()
    with schema_context("alpha"):
        assert payment_callback_handle(provider_code="sandbox", data=tamper(notification)) == (False, reason)
        order.refresh_from_db()
        assert order.status == Order.Status.PENDING_PAYMENT and order.paid_at is None
        assert PaymentCallback.objects.filter(accepted=False, error_code=reason).exists()


def test_a_callback_signed_for_one_shop_is_rejected_by_another():
    _order, notification = _pending_order_and_notification("alpha")
    with schema_context("beta"):
        accepted, reason = payment_callback_handle(provider_code="sandbox", data=notification)
    assert not accepted and reason in {"bad_signature", "wrong_merchant"}


def test_failed_payment_marks_the_attempt_and_leaves_the_order_payable():
    order, notification = _pending_order_and_notification()
    with schema_context("alpha"):
        failed = _resigned(notification, status="failed")
        assert payment_callback_handle(provider_code="sandbox", data=failed) == (True, "payment_failed")
        assert PaymentAttempt.objects.get(token=notification["token"]).status == "failed"
        order.refresh_from_db()
        assert order.status == Order.Status.PENDING_PAYMENT


def test_a_repeated_callback_is_acknowledged_and_delivers_once(django_capture_on_commit_callbacks):
    order, notification = _pending_order_and_notification()
    with schema_context("alpha"), django_capture_on_commit_callbacks(execute=False):
        for _ in range(3):
            assert payment_callback_handle(provider_code="sandbox", data=notification) == (True, "ok")
        order.refresh_from_db()
        assert order.status == Order.Status.DELIVERED
        assert order.lines.get().assignments.count() == 1
        assert order.events.filter(to_status="paid").count() == 1


def test_callback_endpoint_answers_the_gateway_in_plain_text(django_capture_on_commit_callbacks):
    order, notification = _pending_order_and_notification()
    client = host_client("alpha.localhost")
    with django_capture_on_commit_callbacks(execute=False):
        ok = client.post("/payments/callback/sandbox/", notification)
    assert (ok.status_code, ok.content) == (200, b"success")
    bad = client.post("/payments/callback/sandbox/", {**notification, "signature": "x"})
    assert (bad.status_code, bad.content) == (400, b"fail")
    assert client.post("/payments/callback/sandbox/", b"{not json", content_type="application/json").status_code == 400
    assert client.get("/payments/callback/sandbox/").status_code == 405
    assert client.post("/payments/callback/nope/", notification).status_code == 404


def test_sandbox_gateway_page_pays_and_returns_to_the_order(django_capture_on_commit_callbacks):
    with schema_context("alpha"):
        order = place(product_with_codes(codes=2), 1)
        from payments.services import payment_start

        attempt, url = payment_start(order=order, provider_code="sandbox")
    client = host_client("alpha.localhost")
    page = client.get(url)
    assert page.status_code == 200 and str(attempt.amount).encode() in page.content
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(url, {"action": "pay"})
    assert response.status_code == 302 and response["Location"] == f"/orders/{order.number}/"
    with schema_context("alpha"):
        order.refresh_from_db()
        assert order.status == Order.Status.DELIVERED
        assert order.total == Decimal("15.00")
