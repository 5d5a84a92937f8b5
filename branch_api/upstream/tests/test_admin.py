"""The branch admin for its Site A connection: status and buttons, credentials that are never shown,
the markup, browsing Site A's catalog to choose what to sell; and none of it on Site A's admin."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django_tenants.utils import schema_context

from branch_api.upstream.credentials import connection_credentials
from branch_api.upstream.models import UpstreamConnection, UpstreamSelection
from branch_api.upstream.selectors import markup_percent_get
from catalog.models import Product
from conftest import DEMO, host_client
from core.management.commands.seed_demo import demo_admin_ensure

from .conftest import show_everything_to_alpha, site_a_category, site_a_variant


def _staff_client():
    client = host_client("alpha.localhost")
    email, password = DEMO["alpha"][1], DEMO["alpha"][2]
    assert client.post("/accounts/login/", {"login": email, "password": password}).status_code == 302
    return client


def _connection() -> UpstreamConnection:
    with schema_context("alpha"):
        return UpstreamConnection.objects.get()


@pytest.mark.django_db
def test_the_upstream_admin_is_not_on_site_as_admin():
    demo_admin_ensure("root@site-a.test", "root-pass-12345")
    client = host_client("localhost")
    client.post("/accounts/login/", {"login": "root@site-a.test", "password": "root-pass-12345"})
    assert client.get("/admin/").status_code == 200
    assert b"branch_upstream" not in client.get("/admin/").content
    for url in ("/admin/branch_upstream/upstreamconnection/", "/admin/branch_upstream/upstreamselection/browse/"):
        assert client.get(url).status_code == 403


@pytest.mark.django_db
def test_the_connection_page_shows_status_but_never_the_stored_secrets():
    connection = _connection()
    api_key, signing_secret = connection_credentials(connection)
    client = _staff_client()
    assert b"branch_upstream" in client.get("/admin/").content
    listing = client.get("/admin/branch_upstream/upstreamconnection/")
    assert listing.status_code == 302 and listing.url.endswith(f"/{connection.pk}/change/")
    page = client.get(listing.url).content.decode()
    assert "Test connection" in page and "Full resync" in page
    assert api_key.split(".")[0] in page  # the public key prefix names the key
    assert api_key.split(".")[1] not in page and signing_secret not in page


@pytest.mark.django_db
def test_an_operator_points_the_shop_at_another_site_a_and_sets_the_markup():
    connection = _connection()
    old_key, old_secret = connection_credentials(connection)
    client = _staff_client()
    url = f"/admin/branch_upstream/upstreamconnection/{connection.pk}/change/"
    form = {"base_url": "https://other.example", "host_header": "", "is_enabled": "on", "markup_percent": "35"}

    assert client.post(url, {**form, "api_key": "no-dot"}).status_code == 200  # a form error, nothing saved
    assert client.post(url, form).status_code == 302  # empty secrets keep the stored ones
    assert connection_credentials(_connection()) == (old_key, old_secret)
    response = client.post(url, {**form, "api_key": "newprefix123.new-secret", "signing_secret": "new-signing"})
    assert response.status_code == 302

    stored = _connection()
    assert stored.base_url == "https://other.example"
    assert connection_credentials(stored) == ("newprefix123.new-secret", "new-signing")
    assert "new-signing" not in stored.signing_secret_encrypted  # encrypted at rest
    with schema_context("alpha"):
        assert markup_percent_get() == Decimal("35")
    assert "new-secret" not in client.get(url).content.decode()


def test_the_test_connection_button_pings_site_a(site_a):
    connection = _connection()
    client = _staff_client()
    url = f"/admin/branch_upstream/upstreamconnection/{connection.pk}/ping/"
    assert client.get(url).status_code == 405  # a POST-only operation
    response = client.post(url, follow=True)
    assert response.status_code == 200 and "Site A answered: protocol 1" in response.content.decode()
    assert _connection().status == UpstreamConnection.Status.OK

    site_a.down = True
    page = client.post(url, follow=True).content.decode()
    assert "unreachable" in page and _connection().status == UpstreamConnection.Status.ERROR


def test_browsing_site_as_catalog_and_adding_a_category_syncs_it(site_a):
    gaming = site_a_category("Gaming")
    variant = site_a_variant(category=gaming, name="Browse me")
    show_everything_to_alpha()
    client = _staff_client()

    page = client.get("/admin/branch_upstream/upstreamselection/browse/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Browse me" in html and "Gaming" in html

    response = client.post(
        "/admin/branch_upstream/upstreamselection/browse/",
        {"category": [str(gaming.pk)], f"name_category_{gaming.pk}": "Gaming"},
    )
    assert response.status_code == 302
    with schema_context("alpha"):
        selection = UpstreamSelection.objects.get()
        assert (selection.kind, selection.remote_id, selection.name) == ("category", gaming.pk, "Gaming")
        assert Product.objects.get(upstream_id=variant.product_id).is_active
    assert "selling" in client.get("/admin/branch_upstream/upstreamselection/browse/").content.decode()


def test_browsing_while_site_a_is_down_shows_an_error_not_a_500(site_a):
    site_a.down = True
    page = _staff_client().get("/admin/branch_upstream/upstreamselection/browse/")
    assert page.status_code == 200 and "unreachable" in page.content.decode()


@pytest.mark.django_db
def test_the_selection_and_purchase_lists_render_on_the_branch():
    client = _staff_client()
    for url in ("/admin/branch_upstream/upstreamselection/", "/admin/branch_upstream/upstreampurchase/"):
        assert client.get(url).status_code == 200
    assert client.get("/admin/branch_upstream/upstreampurchase/add/").status_code == 403
