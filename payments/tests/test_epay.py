"""易支付 (epay V1): a notification delivers only when signed, ours, successful and confirmed by the gateway.

The gateway is a real HTTP server on 127.0.0.1 answering ``api.php?act=order`` from a dict the test
controls; the shop's channel is configured through ``PaymentChannel`` as an operator would.
"""

from __future__ import annotations

import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from cryptography.exceptions import InvalidTag
from django.db import connection
from django_tenants.utils import schema_context

from conftest import host_client
from core.urls import shop_base_url
from orders.models import Order
from payments.channels import channel_secret, payment_channel_save
from payments.models import PaymentAttempt, PaymentCallback, PaymentChannel
from payments.providers.epay import epay_sign
from payments.services import payment_callback_handle, payment_start
from tests.commerce import place, product_with_codes

KEY = "K" * 32
PID = "1001"


class FakeEpay:
    """``api.php?act=order`` answers from ``orders`` (by out_trade_no); records every query."""

    def __init__(self) -> None:
        self.orders: dict[str, dict] = {}
        self.queries: list[dict] = []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                url = urlsplit(self.path)
                query = dict(parse_qsl(url.query))
                gateway.queries.append(query)
                known = query.get("pid") == PID and query.get("key") == KEY and url.path == "/api.php"
                order = gateway.orders.get(query.get("out_trade_no", "")) if known else None
                body = json.dumps(order or {"code": -1, "msg": "order not found"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def paid(self, attempt: PaymentAttempt, *, money: str | None = None, status: int = 1) -> None:
        self.orders[attempt.token] = {
            "code": 1,
            "msg": "succ",
            "trade_no": f"EP{attempt.pk}",
            "out_trade_no": attempt.token,
            "pid": PID,
            "money": money or f"{attempt.amount:.2f}",
            "status": status,
        }


@pytest.fixture
def gateway():
    fake = FakeEpay()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def _configure(gateway_url: str, schema: str = "alpha") -> PaymentChannel:
    with schema_context(schema):
        return payment_channel_save(
            channel=PaymentChannel(),
            provider="epay",
            name="支付宝",
            config={"gateway_url": gateway_url, "pid": PID, "pay_type": "alipay"},
            secret=KEY,
        )


def _start(schema: str = "alpha") -> tuple[Order, PaymentAttempt, str]:
    with schema_context(schema):
        order = place(product_with_codes(codes=3), 1)
        attempt, url = payment_start(order=order, provider_code="epay")
        return order, attempt, url


def _notify(attempt: PaymentAttempt, **changes) -> dict:
    """What the gateway sends to notify_url, signed with KEY after ``changes``."""
    data = {
        "pid": PID,
        "trade_no": f"EP{attempt.pk}",
        "out_trade_no": attempt.token,
        "type": "alipay",
        "name": "Order",
        "money": f"{attempt.amount:.2f}",
        "trade_status": "TRADE_SUCCESS",
        **changes,
    }
    data["sign"] = epay_sign(data, KEY)
    data["sign_type"] = "MD5"
    return data


def _assert_unchanged(order: Order, attempt: PaymentAttempt) -> None:
    with schema_context("alpha"):
        order.refresh_from_db()
        attempt.refresh_from_db()
    assert order.status == Order.Status.PENDING_PAYMENT and order.paid_at is None
    assert attempt.status == PaymentAttempt.Status.CREATED and attempt.external_id == ""


def _in_thread(schema, fn, *args):
    try:
        with schema_context(schema):
            return fn(*args)
    finally:
        connection.close()


def test_signature_matches_the_reference_vector():
    params = dict(
        parse_qsl("money=0.01&name=测试&notify_url=http://127.0.0.1/notify&out_trade_no=T123&pid=1001&type=alipay")
    )
    assert epay_sign(params, KEY) == "2e3ee9dcb66816238a1983a3e4d9010f"
    extra = {**params, "sign": "x", "sign_type": "MD5", "param": "", "attach": None}
    assert epay_sign(extra, KEY) == "2e3ee9dcb66816238a1983a3e4d9010f"  # sign, sign_type, empties ignored


@pytest.mark.django_db
def test_the_secret_is_stored_encrypted_and_bound_to_its_channel(gateway):
    channel = _configure(gateway.url)
    assert KEY not in channel.secret_encrypted
    with schema_context("alpha"):
        stored = PaymentChannel.objects.get()
        assert channel_secret(stored) == KEY
        stored.provider = "sandbox"  # the same ciphertext read as another channel's secret
        with pytest.raises(InvalidTag):
            channel_secret(stored)


@pytest.mark.django_db
def test_start_url_redirects_to_submit_php_with_a_signed_request(gateway):
    _configure(gateway.url)
    order, attempt, url = _start()
    assert url.startswith(gateway.url + "submit.php?")
    params = dict(parse_qsl(urlsplit(url).query))
    with schema_context("alpha"):
        base = shop_base_url()
    assert params["notify_url"] == f"{base}/payments/callback/epay/"
    assert params["return_url"] == f"{base}/orders/{order.number}/"
    assert (params["pid"], params["type"], params["out_trade_no"]) == (PID, "alipay", attempt.token)
    assert (params["money"], params["sign_type"]) == ("15.00", "MD5")
    assert params["sign"] == epay_sign(params, KEY)


@pytest.mark.django_db
def test_a_disabled_or_missing_channel_cannot_start_a_payment(gateway):
    from payments.errors import ProviderUnavailable

    with pytest.raises(ProviderUnavailable):
        _start()
    channel = _configure(gateway.url)
    with schema_context("alpha"):
        PaymentChannel.objects.filter(pk=channel.pk).update(is_enabled=False)
    with pytest.raises(ProviderUnavailable):
        _start()
    with schema_context("alpha"):
        assert not PaymentAttempt.objects.exclude(status="failed").exists()  # nothing left open to pay


@pytest.mark.django_db
def test_confirmed_notification_delivers_and_answers_success(gateway, django_capture_on_commit_callbacks):
    _configure(gateway.url)
    order, attempt, _url = _start()
    gateway.paid(attempt)
    client = host_client("alpha.localhost")
    with django_capture_on_commit_callbacks(execute=False):
        response = client.get("/payments/callback/epay/?" + urlencode(_notify(attempt)))
    assert (response.status_code, response.content) == (200, b"success")
    assert gateway.queries[-1] == {"act": "order", "pid": PID, "key": KEY, "out_trade_no": attempt.token}
    with schema_context("alpha"):
        order.refresh_from_db()
        attempt.refresh_from_db()
        assert order.status == Order.Status.DELIVERED
        assert order.lines.get().assignments.count() == 1
        assert (attempt.status, attempt.external_id) == (PaymentAttempt.Status.SUCCEEDED, f"EP{attempt.pk}")
        assert "key" not in PaymentCallback.objects.get().payload


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda a: {**_notify(a), "sign": "0" * 32}, "bad_signature"),
        (lambda a: {**_notify(a), "money": "0.01"}, "bad_signature"),  # changed after signing
        (lambda a: {k: v for k, v in _notify(a).items() if k != "sign"}, "bad_signature"),
        (lambda a: _notify(a, pid="2002"), "wrong_merchant"),
        (lambda a: _notify(a, money="0.01"), "amount_mismatch"),
        (lambda a: _notify(a, trade_status="WAIT_BUYER_PAY"), "not_paid"),
        (lambda a: _notify(a, trade_status="TRADE_CLOSED"), "not_paid"),
        (lambda a: _notify(a, out_trade_no="no-such-payment"), "gateway_query_failed"),
    ],
)
def test_forged_or_mismatched_notifications_change_nothing(gateway, tamper, reason):
    _configure(gateway.url)
    order, attempt, _url = _start()
    gateway.paid(attempt, money="0.01" if reason == "amount_mismatch" else None)  # the gateway agrees
    with schema_context("alpha"):
        assert payment_callback_handle(provider_code="epay", data=tamper(attempt)) == (False, reason)
        assert PaymentCallback.objects.filter(accepted=False, error_code=reason).exists()
    _assert_unchanged(order, attempt)


@pytest.mark.django_db
def test_forged_notification_is_answered_fail_and_never_queries_the_gateway(gateway):
    _configure(gateway.url)
    order, attempt, _url = _start()
    gateway.paid(attempt)
    forged = {**_notify(attempt), "sign": epay_sign(_notify(attempt), "wrong-key")}
    response = host_client("alpha.localhost").get("/payments/callback/epay/?" + urlencode(forged))
    assert (response.status_code, response.content) == (400, b"fail")
    assert gateway.queries == []
    _assert_unchanged(order, attempt)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ({"status": 0}, "gateway_not_paid"),
        ({"money": "0.01"}, "gateway_amount_mismatch"),
    ],
)
def test_gateway_query_must_confirm_paid_with_the_same_money(gateway, answer, reason):
    _configure(gateway.url)
    order, attempt, _url = _start()
    gateway.paid(attempt, **answer)
    with schema_context("alpha"):
        assert payment_callback_handle(provider_code="epay", data=_notify(attempt)) == (False, reason)
    _assert_unchanged(order, attempt)


@pytest.mark.django_db
def test_gateway_down_rejects_so_the_gateway_retries_and_nothing_changes(django_capture_on_commit_callbacks):
    channel = _configure(_closed_port_url())
    order, attempt, _url = _start()
    response = host_client("alpha.localhost").get("/payments/callback/epay/?" + urlencode(_notify(attempt)))
    assert (response.status_code, response.content) == (400, b"fail")
    _assert_unchanged(order, attempt)
    with schema_context("alpha"):
        assert PaymentCallback.objects.get().error_code == "gateway_query_failed"

    # The gateway comes back; its retry of the same notification is applied.
    up = FakeEpay()
    up.thread.start()
    try:
        with schema_context("alpha"):
            channel.refresh_from_db()
            channel.config = {**channel.config, "gateway_url": up.url}
            channel.save(update_fields=["config"])
        up.paid(attempt)
        with django_capture_on_commit_callbacks(execute=False):
            retry = host_client("alpha.localhost").get("/payments/callback/epay/?" + urlencode(_notify(attempt)))
        assert retry.content == b"success"
    finally:
        up.server.shutdown()
        up.server.server_close()


@pytest.mark.django_db
def test_notification_before_the_customer_returns(gateway, django_capture_on_commit_callbacks):
    _configure(gateway.url)
    order, attempt, url = _start()
    gateway.paid(attempt)
    notification = _notify(attempt)
    with django_capture_on_commit_callbacks(execute=False):
        assert host_client("alpha.localhost").post("/payments/callback/epay/", notification).content == b"success"
    # The customer's browser then follows return_url, carrying the same signed parameters.
    return_url = urlsplit(dict(parse_qsl(urlsplit(url).query))["return_url"])
    customer = host_client("alpha.localhost")
    page = customer.get(return_url.path + "?" + urlencode(notification))
    assert page.status_code == 200
    status = customer.get(f"/orders/{order.number}/status")
    assert status.json()["status"] == Order.Status.DELIVERED
    with schema_context("alpha"):
        assert PaymentCallback.objects.filter(accepted=True).count() == 1  # the return applied nothing


def test_duplicate_notifications_at_once_deliver_once(live_db, gateway):
    _configure(gateway.url)
    order, attempt, _url = _start()
    gateway.paid(attempt)
    notification = _notify(attempt)

    def notify(_):
        return payment_callback_handle(provider_code="epay", data=notification)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: _in_thread("alpha", notify, i), range(8)))
    assert results == [(True, "ok")] * 8
    with schema_context("alpha"):
        order.refresh_from_db()
        assert order.status == Order.Status.DELIVERED
        assert order.lines.get().assignments.count() == 1
        assert order.events.filter(to_status="paid").count() == 1


@pytest.mark.django_db
def test_a_notification_for_alpha_is_rejected_by_beta(gateway):
    _configure(gateway.url, "alpha")
    _configure(gateway.url, "beta")
    _order, attempt, _url = _start("alpha")
    gateway.paid(attempt)
    with schema_context("beta"):
        accepted, reason = payment_callback_handle(provider_code="epay", data=_notify(attempt))
        assert not PaymentAttempt.objects.filter(token=attempt.token).exists()
    assert (accepted, reason) == (False, "unknown_payment")


@pytest.mark.django_db
def test_checkout_offers_the_shops_enabled_channels():
    from django.test import override_settings

    from conftest import host_client
    from payments.models import PaymentChannel
    from tests.commerce import product_with_codes

    with schema_context("alpha"):
        variant = product_with_codes(codes=2)
        PaymentChannel.objects.create(
            provider="epay",
            name="Alipay / WeChat (epay)",
            is_enabled=True,
            config={"base_url": "http://127.0.0.1:9", "pid": "1001"},
        )
    page = host_client("alpha.localhost").get(f"/p/{variant.product.slug}/").content.decode()
    assert 'value="sandbox"' in page and 'value="epay"' in page and "Alipay / WeChat (epay)" in page
    with override_settings(PAYMENTS_SANDBOX_ENABLED=False):
        page = host_client("alpha.localhost").get(f"/p/{variant.product.slug}/").content.decode()
        assert 'value="sandbox"' not in page and 'type="hidden" name="payment" value="epay"' in page
        data = {
            "variant": variant.pk,
            "quantity": 1,
            "expected_price": "15.00",
            "email": "g@example.test",
            "lookup_password": "lookup-123",
            "payment": "sandbox",
        }
        refused = host_client("alpha.localhost").post(f"/p/{variant.product.slug}/buy/", data)
        assert refused.status_code == 400  # a channel the shop does not offer cannot be forced
    with schema_context("beta"):
        assert not PaymentChannel.objects.exists()  # channels are per shop


@pytest.mark.django_db
def test_a_late_notification_after_expiry_still_delivers(gateway, django_capture_on_commit_callbacks):
    """The customer paid, but the notification came after the order expired: the codes are taken again."""
    from datetime import timedelta

    from django.utils import timezone

    from orders.services import orders_expire_due

    _configure(gateway.url)
    order, attempt, _url = _start()
    gateway.paid(attempt)
    with schema_context("alpha"):
        Order.objects.filter(pk=order.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
        assert orders_expire_due() == 1
    with django_capture_on_commit_callbacks(execute=False):
        response = host_client("alpha.localhost").get("/payments/callback/epay/?" + urlencode(_notify(attempt)))
    assert (response.status_code, response.content) == (200, b"success")
    with schema_context("alpha"):
        order.refresh_from_db()
        assert order.status == Order.Status.DELIVERED and order.lines.get().assignments.count() == 1
        assert order.events.filter(message__contains="after expiry").exists()
