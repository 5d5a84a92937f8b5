"""The client of Site A's branch API: signing, typed errors, schema safety, the ping."""

from __future__ import annotations

import hashlib
import json
from urllib.parse import parse_qsl

import httpx
import pytest
from django.db import connection, transaction
from django_tenants.utils import schema_context

from branch_api import signing
from branch_api.upstream.client import UpstreamClient
from branch_api.upstream.credentials import connection_set_credentials
from branch_api.upstream.errors import UpstreamRefused, UpstreamUnavailable
from branch_api.upstream.models import UpstreamConnection
from branch_api.upstream.services import connection_balance, connection_ping

from .conftest import top_up

API_KEY, SECRET = "abcdef123456.the-secret-part", "the-signing-secret"


def _offline_client(handler, *, host_header: str = "") -> UpstreamClient:
    """A client whose "Site A" is ``handler`` (no database involved)."""
    connection = UpstreamConnection(base_url="https://site-a.example/", host_header=host_header)
    connection_set_credentials(connection, api_key=API_KEY, signing_secret=SECRET)
    return UpstreamClient(connection, transport=httpx.MockTransport(handler))


def _json(status: int, body: dict, **headers) -> httpx.Response:
    return httpx.Response(
        status, content=json.dumps(body).encode(), headers={"Content-Type": "application/json", **headers}
    )


def test_every_request_is_signed_over_method_path_sorted_query_and_body():
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["request"] = request
        return _json(201, {"order": {}})

    client = _offline_client(handler, host_header="platform.example")
    client.request("POST", "orders", params=[("b", "2"), ("a", "x+y z")], body={"x": 1}, idempotency_key="key-12345678")

    request = seen["request"]
    headers = request.headers
    canonical = signing.canonical_request(
        method="POST",
        path="/api/branch/v1/orders",
        query=parse_qsl(request.url.query.decode()),
        timestamp=headers[signing.HEADER_TIMESTAMP],
        nonce=headers[signing.HEADER_NONCE],
        body=request.content,
    )
    assert request.url.path == "/api/branch/v1/orders"
    assert dict(parse_qsl(request.url.query.decode())) == {"a": "x+y z", "b": "2"}  # "+" survives encoding
    assert headers[signing.HEADER_SIGNATURE] == signing.signature(SECRET, canonical)
    assert headers[signing.HEADER_KEY] == API_KEY
    assert len(headers[signing.HEADER_NONCE]) >= signing.MIN_NONCE_LENGTH
    assert headers["Idempotency-Key"] == "key-12345678"
    assert headers["Host"] == "platform.example"
    assert hashlib.sha256(request.content).hexdigest() == canonical.rsplit("\n", 1)[1]


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (402, "insufficient_balance", False),
        (409, "out_of_stock", False),
        (401, "bad_signature", False),
        (409, "request_in_flight", True),
        (429, "throttled", True),
    ],
)
def test_4xx_answers_raise_the_apis_code_and_only_some_are_retryable(status, code, retryable):
    client = _offline_client(lambda request: _json(status, {"code": code, "message": "no", "fields": []}))
    with pytest.raises(UpstreamRefused) as excinfo:
        client.ping()
    assert (excinfo.value.code, excinfo.value.status, excinfo.value.retryable) == (code, status, retryable)


@pytest.mark.parametrize(
    "handler",
    [
        lambda request: httpx.Response(502, text="<html>Bad gateway</html>"),
        lambda request: _json(500, {"code": "error", "message": "boom"}),
        lambda request: httpx.Response(200, text="<html>not the API</html>"),
    ],
)
def test_5xx_and_non_api_answers_are_retryable(handler):
    with pytest.raises(UpstreamUnavailable) as excinfo:
        _offline_client(handler).ping()
    assert excinfo.value.retryable


def test_connection_errors_and_timeouts_are_retryable():
    def refuse(request):
        raise httpx.ConnectError("refused", request=request)

    def slow(request):
        raise httpx.ReadTimeout("slow", request=request)

    for handler, code in [(refuse, "unreachable"), (slow, "timeout")]:
        with pytest.raises(UpstreamUnavailable) as excinfo:
            _offline_client(handler).ping()
        assert excinfo.value.retryable and excinfo.value.code == code


def test_an_html_404_is_a_refusal_not_a_crash():
    with pytest.raises(UpstreamRefused) as excinfo:
        _offline_client(lambda request: httpx.Response(404, text="<h1>Not found</h1>")).ping()
    assert excinfo.value.code == "http_error" and not excinfo.value.retryable


def test_ping_reaches_site_a_in_process_and_records_protocol_and_clock_skew(site_a):
    with schema_context("alpha"):
        result = connection_ping()
        assert connection.schema_name == "alpha"  # Site A's middleware switched it; the client put it back
        stored = UpstreamConnection.objects.get()
    assert (result.protocol, result.branch) == ("1", "alpha")
    assert "orders" in result.capabilities
    assert abs(result.clock_skew_seconds) < 5
    assert stored.status == UpstreamConnection.Status.OK
    assert (stored.protocol_version, stored.last_ping_at is not None) == ("1", True)
    assert ("GET", "/api/branch/v1/ping") in site_a.calls


def test_balance_is_read_and_stored(site_a):
    top_up("42.50", "client-balance-1")
    with schema_context("alpha"):
        assert str(connection_balance()) == "42.50"
        assert str(UpstreamConnection.objects.get().balance) == "42.50"


def test_wrong_credentials_are_refused_and_recorded_on_the_connection(site_a):
    with schema_context("alpha"):
        row = UpstreamConnection.objects.get()
        from branch_api.upstream.credentials import connection_credentials

        api_key, signing_secret = connection_credentials(row)
        connection_set_credentials(row, api_key=api_key, signing_secret="not-the-secret")
        row.save()
        try:
            with pytest.raises(UpstreamRefused) as excinfo:
                connection_ping()
            stored = UpstreamConnection.objects.get()
        finally:
            connection_set_credentials(row, api_key=api_key, signing_secret=signing_secret)
            row.save()
    assert excinfo.value.code == "bad_signature"
    assert stored.status == UpstreamConnection.Status.ERROR and "bad_signature" in stored.last_error


def test_site_a_down_is_recorded_as_a_retryable_failure(site_a):
    site_a.down = True
    with schema_context("alpha"):
        with pytest.raises(UpstreamUnavailable):
            connection_ping()
        stored = UpstreamConnection.objects.get()
    assert stored.status == UpstreamConnection.Status.ERROR and "unreachable" in stored.last_error


def test_the_client_refuses_to_run_inside_a_transaction(site_a):
    with schema_context("alpha"), transaction.atomic():
        with pytest.raises(RuntimeError):
            connection_ping()
    assert site_a.calls == []
