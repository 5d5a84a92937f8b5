"""Site A's branch API: signing, replay protection, IP allowlist, idempotency, purchases, audit."""

import json
import time
from decimal import Decimal

import pytest
from django_tenants.utils import schema_context

from branch_api.provider.models import ApiAuditLog, BranchPurchase, BranchTerms
from branch_api.provider.services import balance_account_code, credential_revoke
from branch_api.provider.tests.conftest import SignedClient, site_a_product, top_up
from cardvault.models import CardAssignment
from ledger.models import Account
from ledger.services import ledger_check
from tenants.models import Branch

pytestmark = pytest.mark.django_db
PING = "/api/branch/v1/ping"
ORDERS = "/api/branch/v1/orders"


def _error(response) -> tuple[int, str]:
    return response.status_code, response.json()["code"]


def test_a_correctly_signed_request_is_answered(alpha_api):
    response = alpha_api.get(PING)
    assert response.status_code == 200
    body = response.json()
    assert body["protocol"] == "1" and body["branch"] == "alpha" and "orders" in body["capabilities"]


def test_missing_headers_and_wrong_key_or_secret_are_refused(alpha_api):
    assert _error(alpha_api.client.get(PING)) == (401, "missing_credentials")
    prefix = alpha_api.api_key.split(".")[0]
    wrong_key = SignedClient(f"{prefix}.not-the-secret", alpha_api.signing_secret)
    assert _error(wrong_key.get(PING)) == (401, "invalid_key")
    assert _error(SignedClient("nope.nope", alpha_api.signing_secret).get(PING)) == (401, "invalid_key")
    wrong_secret = SignedClient(alpha_api.api_key, "another-signing-secret")
    assert _error(wrong_secret.get(PING)) == (401, "bad_signature")


@pytest.mark.parametrize("part", ["body", "path", "query", "method"])
def test_tampering_with_any_signed_part_breaks_the_signature(alpha_api, part):
    body = json.dumps({"reference": "r1", "items": [{"variant_id": 1, "quantity": 1}]}).encode()
    headers = alpha_api.headers("POST", ORDERS + "?x=1", body)
    headers["HTTP_IDEMPOTENCY_KEY"] = "tamper-key-1"
    url, method, sent = ORDERS + "?x=1", "post", body
    if part == "body":
        sent = body.replace(b'"quantity": 1', b'"quantity": 9')
    elif part == "path":
        url = "/api/branch/v1/orders/r1?x=1"
    elif part == "query":
        url = ORDERS + "?x=2"
    else:
        method = "put"
    response = getattr(alpha_api.client, method)(url, sent, content_type="application/json", **headers)
    assert _error(response) == (401, "bad_signature")


# +305, not +301: the clock moves on while the request is made, which brings a future stamp closer.
@pytest.mark.parametrize("offset", [-301, 305, -3600])
def test_timestamps_outside_five_minutes_either_way_are_refused(alpha_api, offset):
    from branch_api.signing import sign_request

    stamp = int(time.time()) + offset
    signed = sign_request(
        api_key=alpha_api.api_key, signing_secret=alpha_api.signing_secret, method="GET", path=PING, timestamp=stamp
    )
    response = alpha_api.client.get(PING, **{f"HTTP_{k.upper().replace('-', '_')}": v for k, v in signed.items()})
    assert _error(response) == (401, "timestamp_skew")


def test_a_replayed_nonce_is_refused(alpha_api):
    headers = alpha_api.headers("GET", PING)
    assert alpha_api.client.get(PING, **headers).status_code == 200
    assert _error(alpha_api.client.get(PING, **headers)) == (401, "nonce_reused")


def test_a_short_nonce_is_refused(alpha_api):
    from branch_api.signing import sign_request

    signed = sign_request(
        api_key=alpha_api.api_key, signing_secret=alpha_api.signing_secret, method="GET", path=PING, nonce="short-nonce"
    )
    response = alpha_api.client.get(PING, **{f"HTTP_{k.upper().replace('-', '_')}": v for k, v in signed.items()})
    assert _error(response) == (401, "invalid_nonce")


def test_a_revoked_key_is_refused(alpha_api):
    from branch_api.provider.models import ApiCredential

    with schema_context("public"):
        credential_revoke(credential=ApiCredential.objects.get(prefix=alpha_api.api_key.split(".")[0]))
    assert _error(alpha_api.get(PING)) == (401, "key_revoked")


def test_ip_allowlist_with_trusted_proxy(alpha_api):
    with schema_context("public"):
        BranchTerms.objects.filter(branch__slug="alpha").update(ip_allowlist="203.0.113.0/24\n2001:db8::/32")
    outsider = alpha_api.get(PING)
    assert _error(outsider) == (403, "ip_not_allowed")
    allowed = alpha_api.client.get(PING, REMOTE_ADDR="203.0.113.7", **alpha_api.headers("GET", PING))
    assert allowed.status_code == 200
    # Behind our proxy (127.0.0.1 is trusted) the forwarded client address counts...
    proxied = alpha_api.client.get(
        PING, REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9", **alpha_api.headers("GET", PING)
    )
    assert proxied.status_code == 200
    # ...but a client cannot claim an address through a proxy we do not trust.
    spoofed = alpha_api.client.get(
        PING, REMOTE_ADDR="198.51.100.4", HTTP_X_FORWARDED_FOR="203.0.113.9", **alpha_api.headers("GET", PING)
    )
    assert _error(spoofed) == (403, "ip_not_allowed")


def test_a_suspended_branch_is_refused(alpha_api):
    with schema_context("public"):
        Branch.objects.filter(slug="alpha").update(status=Branch.Status.SUSPENDED)
    assert _error(alpha_api.get(PING)) == (403, "branch_suspended")


def test_every_call_is_audited_without_secrets(alpha_api):
    alpha_api.get(PING)
    alpha_api.client.get(PING)
    with schema_context("public"):
        rows = list(
            ApiAuditLog.objects.order_by("pk").values("branch__slug", "status_code", "error_code", "key_prefix")
        )
    assert rows[-2:] == [
        {"branch__slug": "alpha", "status_code": 200, "error_code": "", "key_prefix": alpha_api.api_key.split(".")[0]},
        {"branch__slug": None, "status_code": 401, "error_code": "missing_credentials", "key_prefix": ""},
    ]
    secret = alpha_api.api_key.split(".")[1]
    with schema_context("public"):
        assert not ApiAuditLog.objects.filter(key_prefix__contains=secret).exists()


def test_products_show_the_branch_cost_and_only_visible_ones(alpha_api, beta_api):
    variant = site_a_product(codes=3, cost="10.00", price="12.00")
    hidden = site_a_product(codes=1, visible_to=())
    body = alpha_api.get("/api/branch/v1/products").json()
    ids = [p["id"] for p in body["results"]]
    assert variant.product_id in ids and hidden.product_id not in ids
    row = next(p for p in body["results"] if p["id"] == variant.product_id)
    assert row["variants"][0] == {
        "id": variant.pk,
        "sku": variant.sku,
        "name": variant.name,
        "cost": "12.00",
        "tiers": [],
        "stock": 3,
        "is_active": True,
    }
    assert variant.product_id not in [p["id"] for p in beta_api.get("/api/branch/v1/products").json()["results"]]
    assert _error(alpha_api.get("/api/branch/v1/products?page=0")) == (400, "invalid")


def test_branch_price_list_sets_its_cost(alpha_api):
    from branch_api.provider.services import price_list_for
    from catalog.models import PriceRule

    variant = site_a_product(cost="10.00", price="12.00")
    with schema_context("public"):
        rules = price_list_for(Branch.objects.get(slug="alpha"))
        PriceRule.objects.create(price_list=rules, scope="all", mode="percent", value=Decimal("5"))
    rows = alpha_api.get("/api/branch/v1/products").json()["results"]
    assert next(p for p in rows if p["id"] == variant.product_id)["variants"][0]["cost"] == "10.50"


def _buy(api, variant, *, quantity=1, reference="ref-1", key="idem-key-0001", expected=None):
    payload = {"reference": reference, "items": [{"variant_id": variant.pk, "quantity": quantity}]}
    if expected is not None:
        payload["expected_total"] = expected
    return api.post(ORDERS, payload, idempotency_key=key)


def test_a_purchase_debits_the_balance_at_cost_and_returns_codes(alpha_api):
    variant = site_a_product(codes=3, cost="10.00", price="10.00")
    top_up("alpha", "25.00")
    response = _buy(alpha_api, variant, quantity=2, expected="20.00")
    assert response.status_code == 201, response.json()
    order = response.json()["order"]
    assert order["status"] == "delivered" and order["total"] == "20.00"
    codes = [c["code"] for c in order["items"][0]["codes"]]
    assert len(set(codes)) == 2 and all(code.startswith("CODE-") for code in codes)
    with schema_context("public"):
        account = Account.objects.get(code=balance_account_code(Branch.objects.get(slug="alpha").pk))
        assert account.natural_balance == Decimal("5.00")
        assert ledger_check() == []
    assert alpha_api.get("/api/branch/v1/balance").json()["balance"] == "5.00"
    again = alpha_api.get(f"{ORDERS}/ref-1").json()["order"]
    assert [c["code"] for c in again["items"][0]["codes"]] == codes


def test_insufficient_balance_or_stock_changes_nothing(alpha_api):
    variant = site_a_product(codes=2, cost="10.00", price="10.00")
    top_up("alpha", "15.00")
    assert _error(_buy(alpha_api, variant, quantity=2, key="idem-key-a")) == (402, "insufficient_balance")
    top_up("alpha", "100.00")
    assert _error(_buy(alpha_api, variant, quantity=3, key="idem-key-b", reference="ref-2")) == (409, "out_of_stock")
    assert _error(_buy(alpha_api, variant, quantity=1, key="idem-key-c", reference="ref-3", expected="1.00")) == (
        409,
        "expected_total_mismatch",
    )
    with schema_context("public"):
        assert not BranchPurchase.objects.exists()
        assert not CardAssignment.objects.exists()
        account = Account.objects.get(code=balance_account_code(Branch.objects.get(slug="alpha").pk))
        assert account.natural_balance == Decimal("115.00")


def test_a_replayed_post_returns_the_identical_response(alpha_api):
    variant = site_a_product(codes=3)
    top_up("alpha", "100.00")
    first = _buy(alpha_api, variant, key="same-key-123")
    second = _buy(alpha_api, variant, key="same-key-123")
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json() and second["Idempotent-Replayed"] == "true"
    assert second.content == first.content  # byte for byte, though the stored answer is jsonb
    with schema_context("public"):
        assert BranchPurchase.objects.count() == 1


def test_the_same_key_with_another_body_is_422(alpha_api):
    variant = site_a_product(codes=3)
    top_up("alpha", "100.00")
    _buy(alpha_api, variant, key="same-key-456")
    assert _error(_buy(alpha_api, variant, quantity=2, key="same-key-456")) == (422, "idempotency_key_reused")


def test_a_post_without_idempotency_key_is_400(alpha_api):
    variant = site_a_product(codes=1)
    response = alpha_api.post(
        ORDERS, {"reference": "x", "items": [{"variant_id": variant.pk, "quantity": 1}]}, idempotency_key=None
    )
    assert _error(response) == (400, "idempotency_key_required")


def test_a_known_reference_returns_the_original_order_whatever_the_key(alpha_api):
    variant = site_a_product(codes=3)
    top_up("alpha", "100.00")
    first = _buy(alpha_api, variant, reference="line-77", key="key-first-1")
    again = _buy(alpha_api, variant, reference="line-77", key="key-second-2")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["order"]["number"] == first.json()["order"]["number"]


def test_invalid_bodies_get_field_errors(alpha_api):
    response = alpha_api.post(ORDERS, {"reference": "", "items": []}, idempotency_key="bad-body-1")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid" and set(response.json()["fields"]) >= {"reference", "items"}
    raw = alpha_api.client.post(
        ORDERS,
        b"{not json",
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="bad-body-2",
        **alpha_api.headers("POST", ORDERS, b"{not json"),
    )
    assert _error(raw) == (400, "invalid")


def test_an_unknown_or_invisible_variant_is_404(alpha_api):
    hidden = site_a_product(codes=1, visible_to=())
    top_up("alpha", "100.00")
    assert _error(_buy(alpha_api, hidden, key="hidden-1")) == (404, "not_found")
    assert _error(alpha_api.get(f"{ORDERS}/no-such-ref")) == (404, "not_found")


def test_a_branch_cannot_read_another_branchs_order(alpha_api, beta_api):
    variant = site_a_product(codes=2, visible_to=("alpha", "beta"))
    top_up("alpha", "100.00")
    _buy(alpha_api, variant, reference="private-1", key="private-key-1")
    assert _error(beta_api.get(f"{ORDERS}/private-1")) == (404, "not_found")


def test_throttling_per_branch(alpha_api, beta_api):
    with schema_context("public"):
        BranchTerms.objects.filter(branch__slug="alpha").update(rate_per_minute=3)
    assert [alpha_api.get(PING).status_code for _ in range(3)] == [200, 200, 200]
    response = alpha_api.get(PING)
    assert _error(response) == (429, "throttled") and int(response["Retry-After"]) >= 1
    assert beta_api.get(PING).status_code == 200  # another branch is not affected


def test_statement_lists_top_ups_and_purchases(alpha_api):
    variant = site_a_product(codes=2, cost="10.00", price="10.00")
    top_up("alpha", "30.00")
    _buy(alpha_api, variant, key="stmt-key-1")
    rows = alpha_api.get("/api/branch/v1/statement").json()["results"]
    assert [(r["kind"], r["amount"], r["balance_after"]) for r in rows[-2:]] == [
        ("top_up", "30.00", "30.00"),
        ("order_payment", "-10.00", "20.00"),
    ]


def test_crossing_the_low_balance_threshold_emails_the_owner_once(alpha_api, django_capture_on_commit_callbacks):
    from django.core import mail

    variant = site_a_product(codes=3, cost="10.00", price="10.00")
    top_up("alpha", "65.00")  # threshold 50: the second purchase crosses it
    with django_capture_on_commit_callbacks(execute=True):
        _buy(alpha_api, variant, reference="low-1", key="low-key-1")
        _buy(alpha_api, variant, reference="low-2", key="low-key-2")
        _buy(alpha_api, variant, reference="low-3", key="low-key-3")
    alerts = [m for m in mail.outbox if "balance" in m.subject]
    assert len(alerts) == 1
    assert alerts[0].to == ["owner@alpha.test"] and "45.00" in alerts[0].body


def test_a_top_up_may_only_return_to_the_branchs_own_domain(alpha_api):
    ok = alpha_api.post(
        "/api/branch/v1/top-ups",
        {"amount": "10.00", "return_url": "http://alpha.localhost/admin/"},
        idempotency_key="top-up-ok-1",
    )
    assert ok.status_code == 201 and ok.json()["pay_url"].startswith("http://localhost/pay/sandbox/")
    evil = alpha_api.post(
        "/api/branch/v1/top-ups",
        {"amount": "10.00", "return_url": "https://evil.example/steal"},
        idempotency_key="top-up-evil-1",
    )
    assert _error(evil) == (400, "invalid")
    other_branch = alpha_api.post(
        "/api/branch/v1/top-ups",
        {"amount": "10.00", "return_url": "http://beta.localhost/"},
        idempotency_key="top-up-beta-1",
    )
    assert _error(other_branch) == (400, "invalid")


def test_a_product_hidden_from_a_branch_inside_a_visible_category_is_neither_listed_nor_sold(alpha_api, beta_api):
    from branch_api.provider.services import terms_ensure
    from catalog.models import Category
    from tests.commerce import product_with_codes

    with schema_context("public"):
        category = Category.objects.create(name="Hidden inside", slug="hidden-inside")
        shown = product_with_codes(codes=2, cost="10.00", price="12.00", category=category)
        hidden = product_with_codes(codes=2, cost="10.00", price="12.00", category=category)
        for slug in ("alpha", "beta"):
            terms = terms_ensure(Branch.objects.get(slug=slug))
            terms.visible_categories.add(category)
        terms_ensure(Branch.objects.get(slug="alpha")).hidden_products.add(hidden.product)
    top_up("alpha", "50.00")

    ids = [p["id"] for p in alpha_api.get("/api/branch/v1/products").json()["results"]]
    assert shown.product_id in ids and hidden.product_id not in ids
    assert hidden.product_id in [p["id"] for p in beta_api.get("/api/branch/v1/products").json()["results"]]
    assert _error(_buy(alpha_api, hidden, reference="hidden-1", key="hidden-key-1")) == (404, "not_found")

    with schema_context("public"):
        terms_ensure(Branch.objects.get(slug="alpha")).hidden_products.remove(hidden.product)
    assert hidden.product_id in [p["id"] for p in alpha_api.get("/api/branch/v1/products").json()["results"]]
    assert _buy(alpha_api, hidden, reference="hidden-2", key="hidden-key-2").status_code == 201


@pytest.mark.parametrize(
    "url",
    [
        "/api/branch/v1/statement?since=2026-13-01",
        "/api/branch/v1/statement?until=2026-02-30",
        "/api/branch/v1/changes?since=2026-13-01T00:00:00%2B00:00",
    ],
)
def test_an_impossible_date_is_a_clear_error_not_a_server_error(alpha_api, url):
    assert _error(alpha_api.get(url)) == (400, "invalid")


def test_what_a_branch_may_buy_is_what_it_is_shown(alpha_api):
    """The purchase checks visibility in its own SQL; it must agree with the catalog listing for every
    kind of rule: a visible category's subtree, a single visible product, a hidden product, an
    inactive category, an inactive variant, and the whole catalog."""
    from branch_api.provider.services import terms_ensure
    from catalog.models import Category
    from tests.commerce import product_with_codes

    with schema_context("public"):
        root = Category.objects.create(name="Visible root", slug="visible-root")
        child = Category.objects.create(name="Visible child", slug="visible-child", parent=root)
        other = Category.objects.create(name="Elsewhere", slug="elsewhere")
        closed = Category.objects.create(name="Closed", slug="closed", parent=root)
        in_child = product_with_codes(codes=3, cost="10.00", price="12.00", category=child)
        elsewhere = product_with_codes(codes=3, cost="10.00", price="12.00", category=other)
        picked = product_with_codes(codes=3, cost="10.00", price="12.00", category=other)
        hidden = product_with_codes(codes=3, cost="10.00", price="12.00", category=child)
        in_closed = product_with_codes(codes=3, cost="10.00", price="12.00", category=closed)
        retired = product_with_codes(codes=3, cost="10.00", price="12.00", category=child)
        Category.objects.filter(pk=closed.pk).update(is_active=False)
        type(retired).objects.filter(pk=retired.pk).update(is_active=False)
        terms = terms_ensure(Branch.objects.get(slug="alpha"))
        terms.visible_categories.add(root)
        terms.visible_products.add(picked.product)
        terms.hidden_products.add(hidden.product)
    top_up("alpha", "500.00")

    def listed() -> set[int]:
        return {p["id"] for p in alpha_api.get("/api/branch/v1/products?page_size=500").json()["results"]}

    def bought(variant, n: int) -> bool:
        answer = _buy(alpha_api, variant, reference=f"vis-{variant.pk}-{n}", key=f"vis-key-{variant.pk}-{n}")
        assert answer.status_code in (201, 404), answer.json()
        return answer.status_code == 201

    everyone = [in_child, elsewhere, picked, hidden, in_closed, retired]
    assert listed() >= {in_child.product_id, picked.product_id}
    assert not listed() & {elsewhere.product_id, hidden.product_id, in_closed.product_id}
    assert [bought(v, 1) for v in everyone] == [True, False, True, False, False, False]

    with schema_context("public"):
        BranchTerms.objects.filter(branch__slug="alpha").update(show_everything=True)
    assert listed() >= {in_child.product_id, elsewhere.product_id, picked.product_id}
    assert [bought(v, 2) for v in everyone] == [True, True, True, False, False, False]


def test_the_change_feed_lists_manual_stock_moved_by_a_sale_and_a_cancellation(alpha_api):
    """Manual goods' stock moves in an UPDATE when Site A sells them (and back when the order is
    cancelled); the change feed must list the product with its new stock, or a branch keeps showing
    the old one."""
    from datetime import timedelta
    from urllib.parse import quote

    from django.utils import timezone

    from catalog.models import Product, Variant
    from orders.services import order_cancel
    from tests.commerce import place

    variant = site_a_product(codes=0)
    long_ago = timezone.now() - timedelta(hours=1)
    with schema_context("public"):
        Product.objects.filter(pk=variant.product_id).update(
            delivery_mode=Product.DeliveryMode.MANUAL, updated=long_ago
        )
        Variant.objects.filter(pk=variant.pk).update(manual_stock=5, updated=long_ago)
        # Terms changed within the feed's overlap answer "everything"; as if set long ago.
        BranchTerms.objects.filter(branch__slug="alpha").update(updated=long_ago)
    since = quote((timezone.now() - timedelta(minutes=30)).isoformat())

    def stock_in_feed() -> int | None:
        body = alpha_api.get(f"/api/branch/v1/changes?since={since}").json()
        assert body["full"] is False
        listed = [p["variants"][0]["stock"] for p in body["products"] if p["id"] == variant.product_id]
        return listed[0] if listed else None

    assert stock_in_feed() is None  # nothing changed yet
    with schema_context("public"):
        order = place(Variant.objects.get(pk=variant.pk), quantity=2)
    assert stock_in_feed() == 3
    with schema_context("public"):
        Variant.objects.filter(pk=variant.pk).update(updated=long_ago)
        order_cancel(order_id=order.pk)
    assert stock_in_feed() == 5
