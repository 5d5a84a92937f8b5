"""Outbound webhooks: signed with Standard Webhooks, retried on schedule, disabled when gone or failing,
replayable, managed through the signed branch API — each checked against a real local HTTP receiver
that verifies every request with the ``standardwebhooks`` library."""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock

import pytest
from django.conf import settings as django_settings
from django.db import transaction
from django.test import Client
from django.utils import timezone
from django_tenants.utils import schema_context
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from branch_api.provider import webhooks
from branch_api.provider.models import BranchTerms, WebhookDelivery, WebhookEndpoint
from branch_api.provider.services import (
    ApiCaller,
    PurchaseItem,
    branch_purchase,
    branch_top_up,
    credential_issue,
    price_list_for,
    terms_ensure,
)
from branch_api.signing import sign_request
from notifications.models import EmailLog
from tenants.models import Branch
from tests.commerce import product_with_codes

S = WebhookDelivery.Status
API = "/api/branch/v1"


# --- A receiver that verifies like a branch would ----------------------------------------------


@dataclass
class Received:
    headers: dict
    body: bytes
    payload: dict | None
    verified: bool


class Receiver:
    """HTTP server on 127.0.0.1 that checks each request with ``Webhook(secret).verify`` and answers
    ``answer`` (or the next of ``answers``), optionally after hanging ``hang_seconds``."""

    def __init__(self):
        self.secret = ""
        self.answer = 200
        self.answers: list[int] = []
        self.hang_seconds = 0.0
        self.requests: list[Received] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    payload, verified = Webhook(receiver.secret).verify(body, headers), True
                except WebhookVerificationError:
                    payload, verified = None, False
                receiver.requests.append(Received(headers, body, payload, verified))
                if receiver.hang_seconds:
                    time.sleep(receiver.hang_seconds)
                status = (receiver.answers.pop(0) if receiver.answers else receiver.answer) if verified else 401
                try:
                    self.send_response(status)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:  # the client gave up (timeout test)
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/cardmesh"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def _webhook_settings(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True  # the receiver is on 127.0.0.1
    settings.WEBHOOK_TIMEOUT_SECONDS = 3


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


def _endpoint(branch: Branch, receiver: Receiver, **kwargs) -> WebhookEndpoint:
    endpoint, secret = webhooks.webhook_endpoint_create(branch=branch, url=receiver.url, **kwargs)
    receiver.secret = secret
    return endpoint


def _emit(branch: Branch, event_type: str = webhooks.BALANCE_LOW, data: dict | None = None) -> WebhookDelivery:
    deliveries = webhooks.webhook_emit(branch=branch, event_type=event_type, data=data or {"balance": "12.00"})
    assert len(deliveries) == 1
    return deliveries[0]


def _make_due(delivery: WebhookDelivery) -> None:
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())


# --- Signing and delivery -----------------------------------------------------------------------


@pytest.mark.django_db
def test_an_event_is_sent_after_commit_signed_so_the_library_verifies_it(
    alpha, receiver, django_capture_on_commit_callbacks
):
    endpoint = _endpoint(alpha, receiver)
    with django_capture_on_commit_callbacks() as queued:
        delivery = _emit(alpha, data={"balance": Decimal("12.50")})
    assert len(queued) == 1 and receiver.requests == []  # nothing goes out inside the transaction

    delivered = webhooks.webhook_deliver(delivery_id=delivery.pk)

    assert delivered.status == S.SUCCEEDED and delivered.attempts == 1 and delivered.last_status_code == 200
    assert delivered.delivered_at is not None and delivered.next_attempt_at is None
    [request] = receiver.requests
    assert request.verified
    assert request.headers["webhook-id"] == delivery.message_id and delivery.message_id.startswith("msg_")
    assert request.payload["type"] == "balance.low" and request.payload["data"] == {"balance": "12.50"}
    assert request.payload["timestamp"] == delivery.payload["timestamp"]
    secret = webhooks.endpoint_secret(endpoint)
    assert secret.startswith("whsec_") and len(base64.b64decode(secret.removeprefix("whsec_"))) == 24


@pytest.mark.django_db
def test_a_tampered_body_or_another_secret_fails_the_library_check(alpha, receiver):
    _endpoint(alpha, receiver)
    webhooks.webhook_deliver(delivery_id=_emit(alpha).pk)
    [request] = receiver.requests
    assert request.verified

    tampered = request.body.replace(b"12.00", b"99.00")
    assert tampered != request.body
    with pytest.raises(WebhookVerificationError):
        Webhook(receiver.secret).verify(tampered, request.headers)
    other_secret = "whsec_" + base64.b64encode(b"x" * 24).decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(other_secret).verify(request.body, request.headers)


@pytest.mark.django_db
def test_a_delivery_that_is_not_due_or_already_done_is_left_alone(alpha, receiver):
    _endpoint(alpha, receiver)
    delivery = _emit(alpha)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() + timedelta(minutes=1))
    assert webhooks.webhook_deliver(delivery_id=delivery.pk) is None
    _make_due(delivery)
    assert webhooks.webhook_deliver(delivery_id=delivery.pk).status == S.SUCCEEDED
    assert webhooks.webhook_deliver(delivery_id=delivery.pk) is None  # a duplicate task sends nothing
    assert len(receiver.requests) == 1


# --- Retries ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_failed_attempts_follow_the_retry_schedule_with_jitter_then_give_up(alpha, receiver):
    receiver.answer = 500
    _endpoint(alpha, receiver)
    delivery = _emit(alpha)
    for number, nominal in enumerate(webhooks.RETRY_DELAYS, start=1):
        _make_due(delivery)
        before = timezone.now()
        attempt = webhooks.webhook_deliver(delivery_id=delivery.pk)
        after = timezone.now()
        assert attempt.status == S.PENDING and attempt.attempts == number and attempt.last_status_code == 500
        assert before + nominal * 0.9 <= attempt.next_attempt_at <= after + nominal * 1.1, number

    _make_due(delivery)
    last = webhooks.webhook_deliver(delivery_id=delivery.pk)
    assert last.status == S.GAVE_UP and last.attempts == 10 and last.next_attempt_at is None
    assert len(receiver.requests) == 10 and all(r.verified for r in receiver.requests)
    assert {r.headers["webhook-id"] for r in receiver.requests} == {delivery.message_id}  # stable across retries
    assert len({r.body for r in receiver.requests}) == 1


def test_retry_delays_are_spread_over_plus_minus_ten_percent():
    factors = [webhooks.retry_delay(1) / timedelta(seconds=5) for _ in range(400)]
    assert all(0.9 <= f <= 1.1 for f in factors)
    assert min(factors) < 0.95 and max(factors) > 1.05  # really jittered, not a fixed delay
    assert webhooks.retry_delay(9) is not None and webhooks.retry_delay(10) is None
    assert [d.total_seconds() for d in webhooks.RETRY_DELAYS] == [
        5,
        300,
        1800,
        7200,
        18000,
        36000,
        50400,
        72000,
        86400,
    ]


@pytest.mark.django_db
def test_an_endpoint_that_does_not_answer_in_time_is_retried(alpha, receiver, settings):
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.5
    receiver.hang_seconds = 2
    _endpoint(alpha, receiver)
    started = time.monotonic()
    attempt = webhooks.webhook_deliver(delivery_id=_emit(alpha).pk)
    assert time.monotonic() - started < 1.8
    assert attempt.status == S.PENDING and attempt.last_status_code is None
    assert "No answer within 0.5 s" in attempt.last_error
    assert attempt.next_attempt_at - timezone.now() <= timedelta(seconds=5.5)


@pytest.mark.django_db
def test_a_success_clears_the_endpoints_failure_record(alpha, receiver):
    receiver.answers = [503]
    endpoint = _endpoint(alpha, receiver)
    delivery = _emit(alpha)
    webhooks.webhook_deliver(delivery_id=delivery.pk)
    endpoint.refresh_from_db()
    assert endpoint.consecutive_failures == 1 and endpoint.failing_since is not None
    _make_due(delivery)
    assert webhooks.webhook_deliver(delivery_id=delivery.pk).status == S.SUCCEEDED
    endpoint.refresh_from_db()
    assert endpoint.consecutive_failures == 0 and endpoint.failing_since is None


# --- Disabling ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_410_gone_disables_the_endpoint_at_once(alpha, receiver, mailoutbox):
    receiver.answer = 410
    endpoint = _endpoint(alpha, receiver)
    first, waiting = _emit(alpha), _emit(alpha)

    attempt = webhooks.webhook_deliver(delivery_id=first.pk)

    endpoint.refresh_from_db()
    assert attempt.status == S.FAILED and attempt.last_status_code == 410 and attempt.next_attempt_at is None
    assert not endpoint.is_active and endpoint.disabled_at and "410" in endpoint.disabled_reason
    waiting.refresh_from_db()
    assert waiting.status == S.FAILED  # nothing more goes to a disabled endpoint
    assert webhooks.webhook_deliver(delivery_id=waiting.pk) is None
    assert webhooks.webhook_emit(branch=alpha, event_type=webhooks.BALANCE_LOW, data={}) == []
    assert len(receiver.requests) == 1
    [alert] = mailoutbox
    assert alert.to == ["owner@alpha.test"] and receiver.url in alert.subject


@pytest.mark.django_db
def test_an_endpoint_failing_for_five_days_is_disabled_and_the_owner_emailed(alpha, receiver, mailoutbox):
    receiver.answer = 500
    endpoint = _endpoint(alpha, receiver)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        consecutive_failures=41, failing_since=timezone.now() - timedelta(days=5, minutes=1)
    )

    attempt = webhooks.webhook_deliver(delivery_id=_emit(alpha).pk)

    endpoint.refresh_from_db()
    assert attempt.status == S.FAILED and not endpoint.is_active
    assert endpoint.consecutive_failures == 42 and "5 days" in endpoint.disabled_reason
    [alert] = mailoutbox
    assert alert.to == ["owner@alpha.test"]
    assert receiver.url in alert.body and "5 days" in alert.body and "is_active" in alert.body
    assert receiver.url in alert.alternatives[0][0]
    assert EmailLog.objects.filter(key="webhook_disabled", to="owner@alpha.test", ok=True).exists()


@pytest.mark.django_db
def test_an_endpoint_failing_for_four_days_keeps_being_retried(alpha, receiver, mailoutbox):
    receiver.answer = 500
    endpoint = _endpoint(alpha, receiver)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        consecutive_failures=300, failing_since=timezone.now() - timedelta(days=4)
    )
    attempt = webhooks.webhook_deliver(delivery_id=_emit(alpha).pk)
    endpoint.refresh_from_db()
    assert attempt.status == S.PENDING and endpoint.is_active and mailoutbox == []


@pytest.mark.django_db
def test_an_address_refused_at_send_time_is_never_contacted(alpha, receiver, settings):
    _endpoint(alpha, receiver)
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False  # e.g. the host now resolves to an internal address
    attempt = webhooks.webhook_deliver(delivery_id=_emit(alpha).pk)
    assert attempt.status == S.PENDING and "private" in attempt.last_error
    assert receiver.requests == []


# --- Replay and test ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_replay_sends_the_same_webhook_id_and_body_again(alpha, receiver, django_capture_on_commit_callbacks):
    _endpoint(alpha, receiver)
    delivery = _emit(alpha)
    webhooks.webhook_deliver(delivery_id=delivery.pk)

    with django_capture_on_commit_callbacks() as queued:
        replayed = webhooks.webhook_replay(delivery=delivery)
    assert len(queued) == 1 and replayed.status == S.PENDING and replayed.attempts == 0
    assert webhooks.webhook_deliver(delivery_id=delivery.pk).status == S.SUCCEEDED

    first, second = receiver.requests
    assert first.verified and second.verified
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == delivery.message_id
    assert first.body == second.body
    assert WebhookDelivery.objects.filter(endpoint__branch=alpha).count() == 1


@pytest.mark.django_db
def test_a_disabled_endpoint_cannot_be_pinged_or_replayed(alpha, receiver):
    endpoint = _endpoint(alpha, receiver)
    delivery = _emit(alpha)
    webhooks.webhook_endpoint_disable(endpoint=endpoint, reason="test")
    endpoint.refresh_from_db()
    with pytest.raises(webhooks.EndpointDisabled):
        webhooks.webhook_test(endpoint=endpoint)
    with pytest.raises(webhooks.EndpointDisabled):
        webhooks.webhook_replay(delivery=delivery)


@pytest.mark.django_db
def test_a_ping_reaches_an_endpoint_whatever_its_event_filter(alpha, receiver):
    endpoint = _endpoint(alpha, receiver, events=[webhooks.STOCK_CHANGED])
    assert webhooks.webhook_emit(branch=alpha, event_type=webhooks.BALANCE_LOW, data={}) == []  # filtered out
    ping = webhooks.webhook_test(endpoint=endpoint)
    assert webhooks.webhook_deliver(delivery_id=ping.pk).status == S.SUCCEEDED
    [request] = receiver.requests
    assert request.verified and request.payload["type"] == "ping"
    assert request.payload["data"] == {"endpoint_id": endpoint.pk}


# --- Event call sites ---------------------------------------------------------------------------


def _site_a_variant(*visible_to: Branch, price: str = "10.00"):
    variant = product_with_codes(codes=10, price=price, cost="5.00")
    for branch in visible_to:
        terms_ensure(branch).visible_products.add(variant.product)
    return variant


def _deliveries(branch: Branch, event_type: str) -> list[WebhookDelivery]:
    return list(WebhookDelivery.objects.filter(endpoint__branch=branch, event_type=event_type).order_by("pk"))


@pytest.mark.django_db
def test_purchases_announce_the_order_and_a_low_balance_once_per_crossing(alpha, receiver):
    _endpoint(alpha, receiver)
    variant = _site_a_variant(alpha)
    terms = terms_ensure(alpha)
    terms.low_balance_threshold = Decimal("0.00")
    terms.save()
    branch_top_up(branch=alpha, amount=Decimal("100.00"), reference="t1", idempotency_key="wh-top-up-1")
    caller = ApiCaller(branch=alpha, credential=credential_issue(branch=alpha).credential, terms=terms)

    def buy(reference: str):
        purchase, _ = branch_purchase(
            caller=caller, reference=reference, items=[PurchaseItem(variant.pk, 1)], expected_total=None
        )
        return purchase

    first = buy("wh-1")  # 100 → 90, threshold 0: no alert
    terms.low_balance_threshold = Decimal("85.00")
    terms.save()
    buy("wh-2")  # 90 → 80: crosses 85
    buy("wh-3")  # 80 → 70: already below
    branch_top_up(branch=alpha, amount=Decimal("30.00"), reference="t2", idempotency_key="wh-top-up-2")
    buy("wh-4")  # 100 → 90: above again
    buy("wh-5")  # 90 → 80: crosses again

    orders = _deliveries(alpha, webhooks.ORDER_STATUS_CHANGED)
    assert [d.payload["data"]["reference"] for d in orders] == ["wh-1", "wh-2", "wh-3", "wh-4", "wh-5"]
    assert orders[0].payload["data"] == {"reference": "wh-1", "number": first.order.number, "status": "delivered"}
    lows = _deliveries(alpha, webhooks.BALANCE_LOW)
    assert [d.payload["data"]["balance"] for d in lows] == ["80.00", "80.00"]
    assert lows[0].payload["data"]["low_balance_threshold"] == "85.00"


@pytest.mark.django_db
def test_catalog_events_reach_only_branches_that_see_the_product(alpha, beta, receiver):
    _endpoint(alpha, receiver)
    beta_endpoint, _secret = webhooks.webhook_endpoint_create(branch=beta, url=receiver.url)
    terms_ensure(beta)
    shared, alpha_only = _site_a_variant(alpha, beta), _site_a_variant(alpha)

    assert webhooks.webhook_emit_product_updated([shared.product_id, alpha_only.product_id]) == 2
    [to_alpha] = _deliveries(alpha, webhooks.PRODUCT_UPDATED)
    [to_beta] = _deliveries(beta, webhooks.PRODUCT_UPDATED)
    assert to_alpha.payload["data"] == {"product_ids": sorted([shared.product_id, alpha_only.product_id])}
    assert to_beta.payload["data"] == {"product_ids": [shared.product_id]}

    assert webhooks.webhook_emit_stock_changed([alpha_only.pk]) == 1
    [stock] = _deliveries(alpha, webhooks.STOCK_CHANGED)
    assert stock.payload["data"] == {"product_ids": [alpha_only.product_id], "variant_ids": [alpha_only.pk]}
    assert _deliveries(beta, webhooks.STOCK_CHANGED) == []

    # A withdrawn product is still announced to the branches that had it (it is no longer for sale).
    alpha_only.product.is_active = False
    alpha_only.product.save()
    assert webhooks.webhook_emit_product_updated([alpha_only.product_id]) == 1
    assert webhooks.webhook_emit_stock_changed([alpha_only.pk]) == 0  # stock of what is not for sale: silent


@pytest.mark.django_db
def test_price_events_go_to_viewers_or_to_every_branch_on_the_changed_list(alpha, beta, receiver):
    _endpoint(alpha, receiver)
    webhooks.webhook_endpoint_create(branch=beta, url=receiver.url)
    variant = _site_a_variant(alpha)
    price_list = price_list_for(beta)

    assert webhooks.webhook_emit_price_changed(variant_ids=[variant.pk]) == 1
    [to_alpha] = _deliveries(alpha, webhooks.PRICE_CHANGED)
    assert to_alpha.payload["data"] == {"product_ids": [variant.product_id], "variant_ids": [variant.pk], "full": False}

    assert webhooks.webhook_emit_price_changed(price_list_id=price_list.pk) == 1
    [to_beta] = _deliveries(beta, webhooks.PRICE_CHANGED)
    assert to_beta.payload["data"]["full"] is True


@pytest.mark.django_db
def test_catalog_helpers_do_nothing_for_a_branchs_own_shop(alpha, receiver):
    _endpoint(alpha, receiver)
    variant = _site_a_variant(alpha)
    with schema_context("alpha"):
        assert webhooks.webhook_emit_product_updated([variant.product_id]) == 0
        assert webhooks.webhook_emit_stock_changed([variant.pk]) == 0
        assert webhooks.webhook_emit_price_changed(variant_ids=[variant.pk]) == 0
    assert WebhookDelivery.objects.filter(endpoint__branch=alpha).count() == 0


# --- Sweeper ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_sweeper_queues_overdue_deliveries_of_active_endpoints_only(alpha, beta, receiver):
    from branch_api.provider.tasks import webhook_deliveries_sweep_task

    _endpoint(alpha, receiver)
    beta_endpoint, _secret = webhooks.webhook_endpoint_create(branch=beta, url=receiver.url)
    overdue, fresh = _emit(alpha), _emit(alpha)
    stale_of_disabled = webhooks.webhook_emit(branch=beta, event_type=webhooks.BALANCE_LOW, data={})[0]
    long_ago = timezone.now() - timedelta(minutes=5)
    WebhookDelivery.objects.filter(pk__in=[overdue.pk, stale_of_disabled.pk]).update(next_attempt_at=long_ago)
    WebhookEndpoint.objects.filter(pk=beta_endpoint.pk).update(is_active=False)

    with mock.patch("branch_api.provider.webhooks.webhook_queue") as queue:
        assert webhook_deliveries_sweep_task() == 1
    queue.assert_called_once_with(overdue.pk)
    assert fresh.pk not in webhooks.webhook_deliveries_due()
    entry = django_settings.CELERY_BEAT_SCHEDULE["branch-webhooks-sweep"]
    assert entry["task"] == "branch_api.provider.tasks.webhook_deliveries_sweep_task"


# --- The signed API -----------------------------------------------------------------------------


class BranchApi:
    """Signed calls to Site A's branch API as ``branch`` (fresh credentials)."""

    def __init__(self, branch: Branch):
        issued = credential_issue(branch=branch)
        self.api_key, self.signing_secret = issued.api_key, issued.signing_secret
        self.client = Client(HTTP_HOST="localhost")

    def call(self, method: str, path: str, payload: dict | None = None, *, idempotency_key: str = ""):
        body = json.dumps(payload).encode() if payload is not None else b""
        path, _, query = path.partition("?")
        pairs = [tuple(p.split("=", 1)) for p in query.split("&") if p]
        headers = sign_request(
            api_key=self.api_key,
            signing_secret=self.signing_secret,
            method=method,
            path=API + path,
            query=pairs,
            body=body,
        )
        meta = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
        if method == "POST":
            meta["HTTP_IDEMPOTENCY_KEY"] = idempotency_key or f"wh-{time.monotonic_ns()}"
        url = API + path + (f"?{query}" if query else "")
        return self.client.generic(method, url, body, content_type="application/json", **meta)


@pytest.fixture
def alpha_api(alpha) -> BranchApi:
    return BranchApi(alpha)


@pytest.fixture
def beta_api(beta) -> BranchApi:
    return BranchApi(beta)


@pytest.mark.django_db
def test_a_branch_manages_its_endpoints_through_the_signed_api(alpha_api, receiver):
    created = alpha_api.call(
        "POST", "/webhook-endpoints", {"url": receiver.url, "events": ["stock.changed"]}, idempotency_key="wh-create-1"
    )
    assert created.status_code == 201, created.content
    endpoint, secret = created.json()["endpoint"], created.json()["secret"]
    assert secret.startswith("whsec_") and endpoint["events"] == ["stock.changed"] and endpoint["is_active"]
    assert secret == webhooks.endpoint_secret(WebhookEndpoint.objects.get(pk=endpoint["id"]))
    again = alpha_api.call(
        "POST", "/webhook-endpoints", {"url": receiver.url, "events": ["stock.changed"]}, idempotency_key="wh-create-1"
    )
    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true"
    assert again.json()["endpoint"]["id"] == endpoint["id"] and again.json()["secret"] is None  # shown once
    path = f"/webhook-endpoints/{endpoint['id']}"

    listed = alpha_api.call("GET", "/webhook-endpoints").json()["results"]
    assert [e["id"] for e in listed] == [endpoint["id"]] and "secret" not in listed[0]
    assert alpha_api.call("GET", path).json()["endpoint"]["url"] == receiver.url

    changed = alpha_api.call("PATCH", path, {"events": [], "description": "main", "rotate_secret": True})
    assert changed.status_code == 200, changed.content
    assert changed.json()["endpoint"]["events"] == [] and changed.json()["endpoint"]["description"] == "main"
    assert changed.json()["secret"].startswith("whsec_") and changed.json()["secret"] != secret

    assert alpha_api.call("PATCH", path, {"events": ["order.created"]}).status_code == 400
    assert alpha_api.call("PATCH", path, {"is_active": False}).json()["endpoint"]["disabled_reason"]
    assert alpha_api.call("PATCH", path, {"is_active": True}).json()["endpoint"]["is_active"] is True

    assert alpha_api.call("DELETE", path).status_code == 204
    gone = alpha_api.call("GET", path)
    assert gone.status_code == 404 and gone.json()["code"] == "not_found"


@pytest.mark.django_db
def test_a_branch_pings_lists_deliveries_and_replays_through_the_api(alpha_api, receiver):
    created = alpha_api.call("POST", "/webhook-endpoints", {"url": receiver.url}).json()
    receiver.secret = created["secret"]
    endpoint_id = created["endpoint"]["id"]

    ping = alpha_api.call("POST", f"/webhook-endpoints/{endpoint_id}/test")
    assert ping.status_code == 202 and ping.json()["delivery"]["type"] == "ping"
    delivery_id = ping.json()["delivery"]["id"]
    webhooks.webhook_deliver(delivery_id=delivery_id)

    listed = alpha_api.call("GET", f"/webhook-endpoints/{endpoint_id}/deliveries?status=succeeded").json()
    assert [d["id"] for d in listed["results"]] == [delivery_id] and listed["next_page"] is None
    assert listed["results"][0]["last_status_code"] == 200

    replay = alpha_api.call("POST", f"/deliveries/{delivery_id}/replay")
    assert replay.status_code == 202 and replay.json()["delivery"]["status"] == "pending"
    webhooks.webhook_deliver(delivery_id=delivery_id)
    assert [r.headers["webhook-id"] for r in receiver.requests] == [ping.json()["delivery"]["webhook_id"]] * 2
    assert all(r.verified for r in receiver.requests)


@pytest.mark.django_db
def test_another_branch_can_neither_see_nor_touch_my_endpoints(alpha, alpha_api, beta_api, receiver):
    endpoint = _endpoint(alpha, receiver)
    delivery = _emit(alpha)
    base = f"/webhook-endpoints/{endpoint.pk}"

    assert beta_api.call("GET", "/webhook-endpoints").json()["results"] == []
    for method, path, payload in [
        ("GET", base, None),
        ("PATCH", base, {"url": "http://127.0.0.1:1/stolen"}),
        ("DELETE", base, None),
        ("POST", f"{base}/test", None),
        ("GET", f"{base}/deliveries", None),
        ("POST", f"/deliveries/{delivery.pk}/replay", None),
    ]:
        response = beta_api.call(method, path, payload)
        assert (response.status_code, response.json()["code"]) == (404, "not_found"), (method, path)

    endpoint.refresh_from_db()
    assert endpoint.url == receiver.url and WebhookDelivery.objects.filter(endpoint=endpoint).count() == 1
    assert alpha_api.call("GET", base).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
        "ftp://93.184.216.34/hook",
        "https://user:pass@93.184.216.34/hook",
        "not a url",
    ],
)
def test_private_and_non_http_urls_are_refused(alpha_api, settings, url):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    response = alpha_api.call("POST", "/webhook-endpoints", {"url": url})
    assert response.status_code == 400, url
    assert response.json()["code"] == "invalid" and response.json()["fields"] == ["url"]
    assert not WebhookEndpoint.objects.filter(url=url).exists()


@pytest.mark.django_db
def test_a_public_url_is_accepted_and_private_ones_only_when_allowed(alpha_api, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    assert alpha_api.call("POST", "/webhook-endpoints", {"url": "https://93.184.216.34/hook"}).status_code == 201
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    assert alpha_api.call("POST", "/webhook-endpoints", {"url": "http://127.0.0.1:9/hook"}).status_code == 201
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    settings.DEBUG = True
    assert alpha_api.call("POST", "/webhook-endpoints", {"url": "http://127.0.0.1:9/other"}).status_code == 201


# --- End to end through the real Celery worker --------------------------------------------------


@pytest.fixture
def cleanup_endpoints(live_db):
    yield
    WebhookEndpoint.objects.filter(branch__slug__in=["alpha", "beta"]).delete()


def test_the_worker_delivers_after_commit_and_schedules_its_own_retry(
    live_db, celery_worker_thread, cleanup_endpoints, receiver
):
    alpha = Branch.objects.get(slug="alpha")
    BranchTerms.objects.get_or_create(branch=alpha)
    receiver.answers = [500]  # the first attempt fails; the retry ~5 s later succeeds
    _endpoint(alpha, receiver)
    with transaction.atomic():
        delivery = _emit(alpha)

    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        delivery.refresh_from_db()
        if delivery.status != S.PENDING:
            break
        time.sleep(0.2)
    assert delivery.status == S.SUCCEEDED and delivery.attempts == 2
    assert len(receiver.requests) == 2 and all(r.verified for r in receiver.requests)
    assert {r.headers["webhook-id"] for r in receiver.requests} == {delivery.message_id}


# --- Site A admin -------------------------------------------------------------------------------
# Exercised through the ModelAdmins themselves: the integrator wires webhooks_admin into the admin
# site (and so its URLs) at start-up.


@pytest.fixture
def staff_request(db):
    from django.contrib.auth import get_user_model
    from django.test import RequestFactory

    request = RequestFactory(HTTP_HOST="localhost").post("/admin/")
    request.user = get_user_model().objects.create_superuser("wh-root", "wh-root@site-a.test", "root-pass-12345")
    return request


def _model_admin(model):
    from django.contrib.admin import AdminSite

    from branch_api.provider import webhooks_admin

    admin_class = {
        WebhookEndpoint: webhooks_admin.WebhookEndpointAdmin,
        WebhookDelivery: webhooks_admin.WebhookDeliveryAdmin,
    }
    model_admin = admin_class[model](model, AdminSite())
    model_admin.message_user = mock.Mock()
    return model_admin


def test_staff_ping_disable_and_re_enable_endpoints_in_the_admin(staff_request, alpha, receiver):
    endpoint = _endpoint(alpha, receiver)
    model_admin = _model_admin(WebhookEndpoint)
    selected = WebhookEndpoint.objects.filter(pk=endpoint.pk)
    assert model_admin.get_changelist_instance(staff_request).result_count >= 1
    assert not model_admin.has_add_permission(staff_request) and "secret_encrypted" not in model_admin.fields

    model_admin.send_test(staff_request, selected)
    model_admin.disable_endpoints(staff_request, selected)
    endpoint.refresh_from_db()
    assert not endpoint.is_active and "Site A" in endpoint.disabled_reason
    assert WebhookDelivery.objects.get(endpoint=endpoint, event_type="ping").status == S.FAILED
    model_admin.enable_endpoints(staff_request, selected)
    endpoint.refresh_from_db()
    assert endpoint.is_active and endpoint.disabled_reason == "" and endpoint.failing_since is None
    with schema_context("alpha"):
        assert not model_admin.has_view_permission(staff_request)  # Site A only


def test_staff_replay_a_delivery_in_the_admin(staff_request, alpha, receiver):
    _endpoint(alpha, receiver)
    delivery = _emit(alpha)
    webhooks.webhook_deliver(delivery_id=delivery.pk)
    model_admin = _model_admin(WebhookDelivery)
    assert model_admin.get_changelist_instance(staff_request).result_count >= 1

    model_admin.replay_deliveries(staff_request, WebhookDelivery.objects.filter(pk=delivery.pk))

    delivery.refresh_from_db()
    assert delivery.status == S.PENDING and delivery.attempts == 0
    assert webhooks.webhook_deliver(delivery_id=delivery.pk).status == S.SUCCEEDED
    assert [r.headers["webhook-id"] for r in receiver.requests] == [delivery.message_id] * 2
