"""Requests are routed to the right schema by Host; unknown, suspended and unfinished shops are gated."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conftest import host_client
from tenants.models import Branch, Domain
from tenants.services import branch_activate, branch_suspend

pytestmark = pytest.mark.django_db


def _title(response) -> str:
    html = response.content.decode()
    return html.split("<title>", 1)[1].split("</title>", 1)[0].strip()


def test_platform_domain_serves_site_a(public_client):
    response = public_client.get("/")
    assert response.status_code == 200
    assert _title(response) == "Cardmesh"
    assert b"Open your shop" in response.content


@pytest.mark.parametrize("host", ["alpha.localhost", "www.alpha.localhost", "alpha.localhost:8000", "ALPHA.localhost."])
def test_branch_host_variants_reach_the_branch(host):
    response = host_client(host).get("/")
    assert response.status_code == 200
    assert _title(response) == "Alpha Cards"


def test_beta_host_reaches_beta_not_alpha(beta_client):
    response = beta_client.get("/")
    assert _title(response) == "Beta Codes"
    assert b"Alpha Cards" not in response.content


def test_www_and_port_on_platform_domain_reach_site_a():
    response = host_client("www.localhost:8000").get("/")
    assert _title(response) == "Cardmesh"


@pytest.mark.parametrize("host", ["nope.localhost", "evil.example.com", "alpha.localhost.evil.com"])
def test_unknown_host_gets_friendly_404_without_other_shops_content(host):
    response = host_client(host).get("/")
    assert response.status_code == 404
    body = response.content.decode()
    assert "There is no shop at this address" in body
    assert "Alpha Cards" not in body and "Beta Codes" not in body


def test_unknown_host_cannot_reach_admin_or_accounts():
    client = host_client("ghost.localhost")
    assert client.get("/admin/").status_code == 404
    assert client.get("/accounts/login/").status_code == 404


def test_suspended_branch_shows_shop_unavailable_and_resumes(alpha, alpha_client):
    assert alpha_client.get("/").status_code == 200  # cached as active
    branch_suspend(branch=alpha, reason="unpaid")
    response = alpha_client.get("/")
    assert response.status_code == 503
    assert b"This shop is currently unavailable" in response.content
    assert alpha_client.get("/admin/").status_code == 503
    assert alpha_client.get("/healthz").status_code in (200, 503)
    assert b'"schema": "alpha"' in alpha_client.get("/healthz").content

    branch_activate(branch=Branch.objects.get(pk=alpha.pk))
    assert alpha_client.get("/").status_code == 200


def test_branch_still_provisioning_says_so(db):
    branch = Branch.objects.create(name="Later", slug="later", schema_name="later", status=Branch.Status.PROVISIONING)
    Domain.objects.create(domain="later.localhost", tenant=branch)
    response = host_client("later.localhost").get("/")
    assert response.status_code == 503
    assert b"This shop is being set up" in response.content


def test_domain_lookup_is_cached_after_first_request(alpha_client):
    alpha_client.get("/")
    with CaptureQueriesContext(connection) as queries:
        alpha_client.get("/")
    assert not [q for q in queries.captured_queries if "tenants_domain" in q["sql"]]


def test_new_custom_domain_routes_at_once_even_after_a_cached_miss(alpha):
    client = host_client("cards.example.org")
    assert client.get("/").status_code == 404  # miss is cached
    Domain.objects.create(domain="cards.example.org", tenant=alpha, is_primary=False)
    assert _title(client.get("/")) == "Alpha Cards"


def test_removed_domain_stops_routing_at_once(alpha):
    domain = Domain.objects.create(domain="old.example.org", tenant=alpha, is_primary=False)
    client = host_client("old.example.org")
    assert client.get("/").status_code == 200
    domain.delete()
    assert client.get("/").status_code == 404
