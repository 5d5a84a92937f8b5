"""Stripe Checkout: a session per attempt on the shop's own API base; a webhook delivers only when signed.

The Stripe API is a real HTTP server on 127.0.0.1 answering ``POST /v1/checkout/sessions``; webhooks are
signed with the library's own helper, exactly as Stripe signs them.
"""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qsl

import pytest
import stripe
from django_tenants.utils import schema_context

from conftest import host_client
from core.urls import shop_base_url
from orders.models import Order
from payments.channels import payment_channel_save
from payments.models import PaymentAttempt, PaymentCallback, PaymentChannel
from payments.services import payment_start
from tests.commerce import place, product_with_codes
from tests.fake_http import JsonHandler, local_server

SECRET_KEY = "sk_test_" + "s" * 24
WEBHOOK_SECRET = "whsec_" + "w" * 32
CALLBACK = "/payments/callback/stripe/"


class FakeStripe:
    """``POST /v1/checkout/sessions`` answers a session, ``GET /v1/checkout/sessions/<id>`` a paid one
    (payment intent ``pi_<id>``), ``POST /v1/refunds`` a refund (the same one again for a repeated
    Idempotency-Key, as Stripe does; ``refund_error`` = (status, body) makes it fail), ``GET
    /v1/refunds?charge=<id>`` the refunds listed in ``charge_refunds[<id>]``; every request is recorded."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.refunds: dict[str, dict] = {}  # by idempotency key
        self.charge_refunds: dict[str, list[dict]] = {}
        self.refund_error: tuple[int, dict] | None = None
        api = self

        class Handler(JsonHandler):
            def do_GET(self):
                api.requests.append({"method": "GET", "path": self.path, "headers": dict(self.headers), "form": {}})
                if self.path.startswith("/v1/refunds?"):
                    charge = dict(parse_qsl(self.path.split("?", 1)[1])).get("charge", "")
                    listed = api.charge_refunds.get(charge, [])
                    self._answer(200, {"object": "list", "url": "/v1/refunds", "has_more": False, "data": listed})
                    return
                session_id = self.path.removeprefix("/v1/checkout/sessions/")
                if session_id == self.path or not session_id.startswith("cs_"):
                    self._answer(404, {"error": {"type": "invalid_request_error", "message": "no such session"}})
                    return
                self._answer(
                    200,
                    {"id": session_id, "object": "checkout.session", "payment_intent": f"pi_{session_id}"},
                )

            def _refund(self, form: dict) -> None:
                if api.refund_error is not None:
                    self._answer(*api.refund_error)
                    return
                key = self.headers.get("Idempotency-Key", "")
                if key not in api.refunds:
                    api.refunds[key] = {
                        "id": f"re_test_{len(api.refunds) + 1}",
                        "object": "refund",
                        "amount": int(form["amount"]),
                        "payment_intent": form["payment_intent"],
                        "metadata": {k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")},
                        "status": "succeeded",
                    }
                self._answer(200, api.refunds[key])

            def do_POST(self):
                form = dict(parse_qsl(self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()))
                api.requests.append({"path": self.path, "headers": dict(self.headers), "form": form})
                if self.path == "/v1/refunds":
                    self._refund(form)
                    return
                if self.path != "/v1/checkout/sessions":
                    status, answer = 404, {"error": {"type": "invalid_request_error", "message": "no such path"}}
                else:
                    session_id = f"cs_test_{len(api.requests)}"
                    status, answer = (
                        200,
                        {
                            "id": session_id,
                            "object": "checkout.session",
                            "url": f"https://checkout.stripe.test/c/pay/{session_id}",
                            "amount_total": int(form["line_items[0][price_data][unit_amount]"]),
                            "currency": form["line_items[0][price_data][currency]"],
                            "client_reference_id": form.get("client_reference_id"),
                            "payment_status": "unpaid",
                        },
                    )
                self._answer(status, answer)

        self.server, self.url, self.thread = local_server(Handler)


@pytest.fixture
def api():
    fake = FakeStripe()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def _configure(api_url: str, schema: str = "alpha") -> PaymentChannel:
    with schema_context(schema):
        return payment_channel_save(
            channel=PaymentChannel(),
            provider="stripe",
            name="Card / Alipay / WeChat Pay",
            config={"api_base": api_url, "payment_method_types": ["card", "alipay", "wechat_pay"]},
            secret=json.dumps({"secret_key": SECRET_KEY, "webhook_secret": WEBHOOK_SECRET}),
        )


def _start(schema: str = "alpha") -> tuple[Order, PaymentAttempt, str]:
    with schema_context(schema):
        order = place(product_with_codes(codes=3), 1)
        attempt, url = payment_start(order=order, provider_code="stripe")
        return order, attempt, url


def _event(attempt: PaymentAttempt, *, event_id: str = "evt_1", type_: str = "checkout.session.completed", **session):
    obj = {
        "id": attempt.external_id,
        "object": "checkout.session",
        "client_reference_id": attempt.token,
        "metadata": {"token": attempt.token},
        "amount_total": int(attempt.amount * 100),
        "currency": attempt.currency.lower(),
        "payment_status": "paid",
        **session,
    }
    return json.dumps({"id": event_id, "object": "event", "type": type_, "livemode": False, "data": {"object": obj}})


def _send(payload: str, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None, header: str | None = None):
    if header is None:
        header = stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=timestamp)
    return host_client("alpha.localhost").post(
        CALLBACK, data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )


def _assert_unchanged(order: Order, attempt: PaymentAttempt) -> None:
    with schema_context("alpha"):
        order.refresh_from_db()
        stored = PaymentAttempt.objects.get(pk=attempt.pk)
    assert order.status == Order.Status.PENDING_PAYMENT and order.paid_at is None
    assert stored.status == PaymentAttempt.Status.CREATED


@pytest.mark.django_db
def test_start_creates_a_checkout_session_on_the_shops_api_base(api):
    _configure(api.url)
    order, attempt, url = _start()
    [request] = api.requests
    form = request["form"]
    assert request["path"] == "/v1/checkout/sessions"
    assert request["headers"]["Authorization"] == f"Bearer {SECRET_KEY}"
    assert request["headers"]["Idempotency-Key"] == f"checkout-{attempt.token}"
    assert form["mode"] == "payment"
    assert form["line_items[0][price_data][unit_amount]"] == "1500"  # 15.00 in the smallest unit
    assert form["line_items[0][price_data][currency]"] == attempt.currency.lower()
    assert form["line_items[0][quantity]"] == "1"
    assert form["client_reference_id"] == attempt.token and form["metadata[token]"] == attempt.token
    assert [form[f"payment_method_types[{i}]"] for i in range(3)] == ["card", "alipay", "wechat_pay"]
    with schema_context("alpha"):
        base = shop_base_url()
        attempt.refresh_from_db()
    assert form["success_url"] == form["cancel_url"] == f"{base}/orders/{order.number}/"
    assert url == "https://checkout.stripe.test/c/pay/cs_test_1"
    assert attempt.external_id == "cs_test_1"
    assert stripe.api_key is None  # nothing global was set


@pytest.mark.django_db
def test_api_errors_or_a_missing_channel_leave_no_attempt(api):
    from payments.errors import ProviderUnavailable

    with pytest.raises(ProviderUnavailable):
        _start()
    _configure(api.url + "/nowhere")  # the fake answers 404 there
    with pytest.raises(ProviderUnavailable):
        _start()
    with schema_context("alpha"):
        assert not PaymentAttempt.objects.exclude(status="failed").exists()  # nothing left open to pay


@pytest.mark.django_db
def test_completed_paid_event_delivers_the_order(api, django_capture_on_commit_callbacks):
    _configure(api.url)
    order, attempt, _url = _start()
    with django_capture_on_commit_callbacks(execute=False):
        response = _send(_event(attempt))
    assert (response.status_code, response.content) == (200, b"ok")
    with schema_context("alpha"):
        order.refresh_from_db()
        attempt.refresh_from_db()
        assert order.status == Order.Status.DELIVERED
        assert order.lines.get().assignments.count() == 1
        assert (attempt.status, attempt.external_id) == (PaymentAttempt.Status.SUCCEEDED, "cs_test_1")
        assert PaymentCallback.objects.get().payload["event_id"] == "evt_1"


@pytest.mark.django_db
def test_the_same_event_twice_delivers_once(api, django_capture_on_commit_callbacks):
    _configure(api.url)
    order, attempt, _url = _start()
    payload = _event(attempt)
    with django_capture_on_commit_callbacks(execute=False):
        assert _send(payload).status_code == 200
        assert _send(payload).status_code == 200  # a replay is acknowledged
    with schema_context("alpha"):
        order.refresh_from_db()
        assert order.status == Order.Status.DELIVERED
        assert order.lines.get().assignments.count() == 1
        assert order.events.filter(to_status="paid").count() == 1
        codes = list(PaymentCallback.objects.order_by("pk").values_list("error_code", flat=True))
    assert codes == ["", "event_already_applied"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("send", "status", "reason"),
    [
        (lambda a: _send(_event(a), secret="whsec_forged"), 400, "bad_signature"),
        (lambda a: _send(_event(a), header="t=1,v1=" + "0" * 64), 400, "bad_signature"),
        (lambda a: _send(_event(a), header=""), 400, "bad_signature"),
        (lambda a: _send(_event(a), timestamp=int(time.time()) + 600), 400, "bad_signature"),  # future
        (lambda a: _send(_event(a), timestamp=int(time.time()) - 600), 400, "bad_signature"),  # too old
        (lambda a: _send(_event(a, amount_total=1)), 400, "amount_mismatch"),
        (lambda a: _send(_event(a, currency="usd" if a.currency != "USD" else "eur")), 400, "currency_mismatch"),
        (lambda a: _send(_event(a, client_reference_id="no-such-payment")), 400, "bad_payload"),
        (lambda a: _send(_event(a, payment_status="unpaid")), 200, "not_paid"),  # acknowledged, nothing applied
        (lambda a: _send(_event(a, type_="payment_intent.created")), 200, "event_ignored"),
        (lambda a: _send(_event(a, type_="checkout.session.expired")), 200, "event_ignored"),
    ],
)
def test_forged_mismatched_or_unrelated_events_change_nothing(api, send, status, reason):
    _configure(api.url)
    order, attempt, _url = _start()
    with schema_context("alpha"):
        attempt.refresh_from_db()  # external_id = the session id
    response = send(attempt)
    assert response.status_code == status
    with schema_context("alpha"):
        assert PaymentCallback.objects.get().error_code == reason
    _assert_unchanged(order, attempt)


@pytest.mark.django_db
def test_the_payload_changed_after_signing_is_rejected(api):
    _configure(api.url)
    order, attempt, _url = _start()
    with schema_context("alpha"):
        attempt.refresh_from_db()
    header = stripe.WebhookSignature.generate_signature_header(_event(attempt, amount_total=1), WEBHOOK_SECRET)
    assert _send(_event(attempt), header=header).status_code == 400
    _assert_unchanged(order, attempt)


@pytest.mark.django_db
def test_an_event_for_alpha_is_rejected_by_beta(api):
    _configure(api.url, "alpha")
    _order, attempt, _url = _start("alpha")
    with schema_context("alpha"):
        attempt.refresh_from_db()
    response = host_client("beta.localhost").post(
        CALLBACK,
        data=_event(attempt),
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=stripe.WebhookSignature.generate_signature_header(_event(attempt), WEBHOOK_SECRET),
    )
    assert response.status_code == 400  # beta has no stripe channel (and no such attempt)


@pytest.mark.django_db
def test_the_webhook_is_post_only(api):
    assert host_client("alpha.localhost").get(CALLBACK).status_code == 405


@pytest.mark.django_db
def test_the_event_dedupe_lookup_can_use_its_index():
    from django.db import connection

    with schema_context("alpha"):
        # As the dedupe asks it (``.exists()``: no ordering, one row); an ORDER BY created would let the
        # planner walk the created index instead.
        lookup = (
            PaymentCallback.objects.filter(provider="stripe", accepted=True, error_code="", payload__event_id="evt_1")
            .order_by()
            .values("pk")[:1]
        )
        sql, params = lookup.query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute(f"EXPLAIN {sql}", params)
            plan = " ".join(row[0] for row in cursor.fetchall())
    assert "payment_callback_stripe_event" in plan


@pytest.mark.django_db
def test_a_late_event_after_expiry_still_delivers(api, django_capture_on_commit_callbacks):
    from datetime import timedelta

    from django.utils import timezone

    from orders.services import orders_expire_due

    _configure(api.url)
    order, attempt, _url = _start()
    with schema_context("alpha"):
        attempt.refresh_from_db()
        Order.objects.filter(pk=order.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
        assert orders_expire_due() == 1
    with django_capture_on_commit_callbacks(execute=False):
        assert _send(_event(attempt)).status_code == 200
    with schema_context("alpha"):
        order.refresh_from_db()
        assert order.status == Order.Status.DELIVERED and order.lines.get().assignments.count() == 1
        assert order.events.filter(message__contains="after expiry").exists()


@pytest.mark.django_db
def test_a_live_mode_event_for_a_test_mode_key_is_refused(api):
    _configure(api.url)
    order, attempt, _url = _start()
    with schema_context("alpha"):
        attempt.refresh_from_db()
    live = json.loads(_event(attempt))
    live["livemode"] = True
    assert _send(json.dumps(live)).status_code == 400
    with schema_context("alpha"):
        assert PaymentCallback.objects.get().error_code == "wrong_merchant"
    _assert_unchanged(order, attempt)


def test_the_same_event_sent_at_once_delivers_once(live_db, api):
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    _configure(api.url)
    order, attempt, _url = _start()
    with schema_context("alpha"):
        attempt.refresh_from_db()
    payload = _event(attempt)

    def send(_):
        try:
            return _send(payload).status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(send, range(6)))
    assert statuses == [200] * 6  # repeats are acknowledged so that Stripe stops retrying
    with schema_context("alpha"):
        order.refresh_from_db()
        assert order.status == Order.Status.DELIVERED
        assert order.lines.get().assignments.count() == 1
        assert order.events.filter(to_status="paid").count() == 1
