"""Bad input to the branch API gets the API's JSON error with a stable code: never a server error,
never the storefront's HTML page. The cases found by the random requests below are also tested one
by one."""

from __future__ import annotations

import json
import random
from urllib.parse import quote, urlencode

from django_tenants.utils import schema_context

from branch_api.provider.models import ApiAuditLog, BranchTerms
from branch_api.provider.tests.conftest import site_a_product, top_up

PING = "/api/branch/v1/ping"
ORDERS = "/api/branch/v1/orders"


def _send(api, method: str, url: str, body: bytes = b"", *, content_type="application/json", **headers):
    extra = api.headers(method, url, body)
    extra.update({f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()})
    return api.client.generic(method, url, body, content_type=content_type, REMOTE_ADDR="127.0.0.1", **extra)


def _error(response) -> tuple[int, str]:
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    body = response.json()
    assert set(body) == {"code", "message", "fields"}
    return response.status_code, body["code"]


def test_an_unknown_path_under_the_api_is_a_json_404(alpha_api):
    assert _error(alpha_api.get("/api/branch/v1/nothing-here")) == (404, "not_found")
    # An encoded slash in a reference leaves every route behind too.
    assert _error(alpha_api.get("/api/branch/v1/orders/a%2Fb")) == (404, "not_found")
    assert _error(_send(alpha_api, "POST", "/api/branch/v1/orders/x/y")) == (404, "not_found")


def test_a_nul_character_is_refused_at_the_edge_and_the_refusal_is_audited(alpha_api):
    assert _error(alpha_api.get("/api/branch/v1/webhook-endpoints/a%00b")) == (400, "invalid")
    assert _error(alpha_api.get("/api/branch/v1/statement?since=%00")) == (400, "invalid")
    with schema_context("public"):
        assert ApiAuditLog.objects.filter(path="/api/branch/v1/webhook-endpoints/a\ufffdb", status_code=400).exists()
    response = _send(alpha_api, "POST", ORDERS, b"{}", **{"Idempotency-Key": "key-with-\x00-inside"})
    assert _error(response) == (400, "idempotency_key_required")
    assert _error(alpha_api.get(PING, **{"X-Cardmesh-Key": "ab\x00cd.secret"})) == (401, "invalid_key")


def test_a_timestamp_past_any_number_is_a_skew_error(alpha_api):
    assert _error(alpha_api.get(PING, **{"X-Cardmesh-Timestamp": "9" * 400})) == (401, "timestamp_skew")


def test_a_body_of_another_media_type_or_an_unknown_method_gets_the_api_error(alpha_api):
    response = _send(
        alpha_api, "POST", ORDERS, b"reference=x", content_type="text/plain", **{"Idempotency-Key": "k" * 8}
    )
    assert _error(response) == (415, "unsupported_media_type")
    assert _error(_send(alpha_api, "PUT", ORDERS, b"{}")) == (405, "method_not_allowed")


def test_a_page_past_any_catalog_is_refused_not_sent_to_the_database(alpha_api):
    assert _error(alpha_api.get("/api/branch/v1/products?page=9223372036854775808")) == (400, "invalid")
    assert alpha_api.get("/api/branch/v1/products?page=1000000").json()["results"] == []


def test_a_since_without_a_time_zone_is_read_as_utc(alpha_api):
    body = alpha_api.get("/api/branch/v1/changes?since=0001-01-01").json()
    assert "cursor" in body and "products" in body


# --- Random requests ----------------------------------------------------------------------------

ODD = ["", " ", "0", "-1", "2", "99999999999999999999999", "9" * 400, "1e309", "NaN", "-0", "1.005", "abc", "\x00",
       "a\x00b", "é漢字🙂", "x" * 3000, "' OR 1=1 --", "../../etc/passwd", "%00", "2026-13-01", "2026-02-30",
       "0001-01-01", "2026-01-01T00:00:00+00:00", "true", "null", "[]", "https://example.com/hook", "ftp://x",
       "http://[::1]:99999/"]  # fmt: skip
FIELDS = ["reference", "items", "variant_id", "quantity", "expected_total", "url", "events", "amount", "return_url",
          "is_active", "description"]  # fmt: skip


def _value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(10 if depth < 2 else 6)
    if kind == 0:
        return rng.choice([None, True, False, 0, -1, 10**30, 2**63, 0.5, 1e308])
    if kind < 6:
        return rng.choice(ODD)
    if kind < 8:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(3))]
    return {rng.choice(FIELDS + ODD[:8]): _value(rng, depth + 1) for _ in range(rng.randrange(4))}


def _request(rng: random.Random, variant_id: int, number: int) -> tuple[str, str, bytes, dict]:
    method, path, body, headers = "GET", PING, b"", {}
    odd_id = quote(str(_value(rng)), safe="")
    kind = rng.randrange(8)
    if kind == 0:
        item = {"variant_id": rng.choice([variant_id, _value(rng)]), "quantity": rng.choice([1, _value(rng)])}
        order = {"reference": _value(rng), "items": rng.choice([[item], _value(rng)]), "expected_total": _value(rng)}
        method, path, body = "POST", ORDERS, json.dumps(rng.choice([order, _value(rng)])).encode()
    elif kind == 1:
        endpoint = {"url": _value(rng), "events": _value(rng), "description": _value(rng)}
        method, path = "POST", "/api/branch/v1/webhook-endpoints"
        body = json.dumps(endpoint).encode()
    elif kind == 2:
        method, path = "POST", "/api/branch/v1/top-ups"
        body = json.dumps({"amount": _value(rng), "return_url": _value(rng)}).encode()
    elif kind == 3:
        method = rng.choice(["GET", "PATCH", "DELETE"])
        path = f"/api/branch/v1/webhook-endpoints/{odd_id}"
        body = json.dumps({"url": _value(rng), "is_active": _value(rng)}).encode() if method == "PATCH" else b""
    elif kind == 4:
        method, path = rng.choice(
            [("POST", f"/api/branch/v1/deliveries/{odd_id}/replay"), ("GET", f"{ORDERS}/{odd_id}")]
        )
    else:
        path = "/api/branch/v1/" + rng.choice(["products", "changes", "orders", "statement", "categories", "balance"])
    if method != "POST" and rng.random() < 0.8:
        names = ["page", "page_size", "since", "until", "status", rng.choice(ODD)]
        path += "?" + urlencode([(rng.choice(names), str(_value(rng))) for _ in range(rng.randrange(1, 4))])
    if method == "POST":
        headers["Idempotency-Key"] = rng.choice([f"random-key-{number:06d}", str(_value(rng))[:300]])
    if rng.random() < 0.1:
        name = rng.choice(["X-Cardmesh-Key", "X-Cardmesh-Timestamp", "X-Cardmesh-Nonce", "X-Cardmesh-Signature"])
        headers[name] = str(_value(rng))
    if rng.random() < 0.05:
        body = rng.choice([b"{", b"\xff\xfe", b"\x00"])
    return method, path, body, headers


def test_random_requests_get_the_api_error_never_a_server_error(alpha_api):
    variant = site_a_product(codes=10)
    top_up("alpha", "100.00")
    with schema_context("public"):  # the per-minute limit is not what is tested here
        BranchTerms.objects.filter(branch__slug="alpha").update(rate_per_minute=1_000_000)
    rng = random.Random(20261122)
    failures = []
    for number in range(400):
        method, url, body, headers = _request(rng, variant.pk, number)
        response = _send(alpha_api, method, url, body, **headers)
        if response.status_code < 400:
            continue
        try:
            _error(response)
            assert response.status_code < 500
        except (AssertionError, ValueError):
            failures.append((method, url[:200], body[:100], response.status_code, response.content[:200]))
    assert failures == []
