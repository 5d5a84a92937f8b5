"""Site A's admin for branches: terms, top-ups, credentials shown once, read-only audit."""

from decimal import Decimal

import pytest
from django_tenants.utils import schema_context

from branch_api.provider.models import ApiCredential, BranchTerms
from branch_api.provider.services import branch_balance_account
from branch_api.provider.tests.conftest import SignedClient, signed_client_for
from conftest import DEMO, host_client
from core.management.commands.seed_demo import demo_admin_ensure

pytestmark = pytest.mark.django_db


@pytest.fixture
def site_admin():
    demo_admin_ensure("root@site-a.test", "root-pass-12345")
    client = host_client("localhost")
    client.post("/accounts/login/", {"login": "root@site-a.test", "password": "root-pass-12345"})
    return client


def _terms(slug="alpha") -> BranchTerms:
    with schema_context("public"):
        return BranchTerms.objects.select_related("branch").get(branch__slug=slug)


def test_terms_list_shows_every_branch(site_admin):
    response = site_admin.get("/admin/branch_provider/branchterms/")
    assert response.status_code == 200
    assert b"Alpha Cards" in response.content and b"Beta Codes" in response.content


def test_staff_top_up_credits_the_balance_once_per_reference(site_admin):
    terms = _terms()
    url = f"/admin/branch_provider/branchterms/{terms.pk}/top-up/"
    assert site_admin.get(url).status_code == 200
    for _ in range(2):  # a double submit
        assert site_admin.post(url, {"amount": "40.00", "reference": "bank-123"}).status_code == 302
    with schema_context("public"):
        assert branch_balance_account(terms.branch).natural_balance == Decimal("40.00")
    assert site_admin.post(url, {"amount": "-5", "reference": "x"}).status_code == 200  # form error, no 500


def test_issued_credentials_are_shown_once_and_work(site_admin):
    terms = _terms()
    response = site_admin.post(f"/admin/branch_provider/branchterms/{terms.pk}/issue-credential/")
    html = response.content.decode()
    api_key = html.split('data-testid="api-key">')[1].split("<")[0]
    secret = html.split('data-testid="signing-secret">')[1].split("<")[0]
    assert SignedClient(api_key, secret).get("/api/branch/v1/ping").status_code == 200
    with schema_context("public"):
        credential = ApiCredential.objects.get(prefix=api_key.split(".")[0])
    detail = site_admin.get(f"/admin/branch_provider/apicredential/{credential.pk}/change/").content.decode()
    assert api_key.split(".")[1] not in detail and secret not in detail


def test_revoking_in_admin_stops_the_key(site_admin):
    api = signed_client_for("alpha")
    with schema_context("public"):
        credential = ApiCredential.objects.get(prefix=api.api_key.split(".")[0])
    site_admin.post("/admin/branch_provider/apicredential/", {"action": "revoke", "_selected_action": [credential.pk]})
    assert api.get("/api/branch/v1/ping").json()["code"] == "key_revoked"


def test_global_adjustment_in_bulk_sets_each_branch_cost_rule(site_admin):
    ids = [_terms("alpha").pk, _terms("beta").pk]
    response = site_admin.post(
        "/admin/branch_provider/branchterms/",
        {"action": "set_global_adjustment", "_selected_action": ids, "apply": "1", "percent": "7.5"},
    )
    assert response.status_code in (200, 302)
    with schema_context("public"):
        for terms in BranchTerms.objects.filter(pk__in=ids):
            rule = terms.price_list.rules.get(scope="all")
            assert (rule.mode, rule.value) == ("percent", Decimal("7.5000"))


def test_branch_admins_never_see_site_a_branch_terms():
    client = host_client("alpha.localhost")
    client.post("/accounts/login/", {"login": DEMO["alpha"][1], "password": DEMO["alpha"][2]})
    assert client.get("/admin/branch_provider/branchterms/").status_code in (403, 404)


def test_new_branches_get_terms_and_a_working_connection():
    from branch_api.upstream.credentials import connection_credentials
    from branch_api.upstream.models import UpstreamConnection
    from tenants.services import branch_provision

    result = branch_provision(slug="gamma-net", name="Gamma", owner_email="o@gamma.test", password="pw-1234567890")
    with schema_context("public"):
        assert BranchTerms.objects.filter(branch__slug="gamma-net").exists()
        assert ApiCredential.objects.filter(branch__slug="gamma-net", revoked_at__isnull=True).count() == 1
    with schema_context(result.schema):
        api_key, secret = connection_credentials(UpstreamConnection.objects.get())
    assert SignedClient(api_key, secret).get("/api/branch/v1/ping").json()["branch"] == "gamma-net"


def test_hiding_a_product_in_the_terms_admin_resends_the_catalog_and_tells_the_branch(site_admin, settings):
    from branch_api.provider.models import WebhookDelivery
    from branch_api.provider.webhooks import webhook_endpoint_create
    from tests.commerce import product_with_codes

    settings.WEBHOOK_ALLOW_LOOPBACK = True
    terms = _terms()
    with schema_context("public"):
        product = product_with_codes(codes=1).product
        webhook_endpoint_create(branch=terms.branch, url="http://127.0.0.1:9/hook")
    form = {
        "branch": terms.branch_id,
        "mode": terms.mode,
        "price_list": "",
        "show_everything": "on",
        "hidden_products": [product.pk],
        "low_balance_threshold": "50.00",
        "ip_allowlist": "",
        "rate_per_minute": "600",
    }
    page = site_admin.get(f"/admin/branch_provider/branchterms/{terms.pk}/change/").content.decode()
    assert 'name="hidden_products"' in page

    response = site_admin.post(f"/admin/branch_provider/branchterms/{terms.pk}/change/", form)

    errors = response.context and [response.context["adminform"].form.errors, response.context["errors"]]
    assert response.status_code == 302, errors
    with schema_context("public"):
        saved = BranchTerms.objects.get(pk=terms.pk)
        assert list(saved.hidden_products.values_list("pk", flat=True)) == [product.pk]
        assert saved.updated > terms.updated  # the change feed answers "full"
        announced = WebhookDelivery.objects.get(endpoint__branch=terms.branch, event_type="product.updated")
        assert announced.payload["data"]["product_ids"] == [product.pk]


def _terms_form(terms: BranchTerms, **overrides) -> dict:
    return {
        "branch": terms.branch_id,
        "mode": terms.mode,
        "low_balance_threshold": "50.00",
        "rate_per_minute": "600",
        "ip_allowlist": "",
        **overrides,
    }


def test_site_a_staff_switch_a_branch_to_platform_collect_and_the_branch_admin_shows_it(site_admin, staff_client):
    from branch_api.upstream.models import UpstreamConnection

    terms = _terms()
    with schema_context("alpha"):
        connection_id = UpstreamConnection.objects.get().pk
    connection_page = f"/admin/branch_upstream/upstreamconnection/{connection_id}/change/"
    assert "through its own payment channels" in staff_client.get(connection_page).content.decode()

    url = f"/admin/branch_provider/branchterms/{terms.pk}/change/"
    response = site_admin.post(url, _terms_form(terms, mode=BranchTerms.Mode.PLATFORM_COLLECT))
    assert response.status_code == 302
    assert _terms().mode == BranchTerms.Mode.PLATFORM_COLLECT
    page = staff_client.get(connection_page).content.decode()
    assert "Site A collects through its channels" in page
    assert 'name="mode"' not in page  # read-only for the branch: only Site A sets it


def test_site_a_admin_refuses_collecting_for_a_branch_in_another_currency(site_admin):
    from tenants.models import Branch

    terms = _terms()
    with schema_context("public"):
        Branch.objects.filter(pk=terms.branch_id).update(currency="EUR")
    url = f"/admin/branch_provider/branchterms/{terms.pk}/change/"
    response = site_admin.post(url, _terms_form(terms, mode=BranchTerms.Mode.PLATFORM_COLLECT))
    assert response.status_code == 200
    assert "mode" in response.context["adminform"].form.errors
    assert _terms().mode == BranchTerms.Mode.OWN_GATEWAY


@pytest.mark.parametrize("query", ["?start=2026-13-01&end=2026-02-30", "?start=2026-13-01&format=csv", "?start=soon"])
def test_network_report_takes_its_default_period_for_a_date_that_does_not_exist(site_admin, query):
    response = site_admin.get(f"/admin/branch_provider/branchterms/report/{query}")
    assert response.status_code == 200
    assert b"alpha" in response.content.lower()


def test_the_top_up_form_draws_its_fields_as_inputs_and_an_unknown_branch_is_404(site_admin):
    import re

    page = site_admin.get(f"/admin/branch_provider/branchterms/{_terms().pk}/top-up/").content.decode()
    for name in ("amount", "reference"):
        assert "border" in re.search(rf'<input[^>]*name="{name}"[^>]*>', page).group(0)
    assert site_admin.get("/admin/branch_provider/branchterms/999999/top-up/").status_code == 404
    assert site_admin.post("/admin/branch_provider/branchterms/999999/issue-credential/").status_code == 404
