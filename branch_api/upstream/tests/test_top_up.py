"""A branch owner tops up the balance at Site A by paying on Site A's payment page."""

from decimal import Decimal

import pytest
from django_tenants.utils import schema_context

from branch_api.provider.models import BalanceTopUp
from branch_api.upstream.models import UpstreamConnection
from branch_api.upstream.tests.conftest import alpha_balance_at_site_a
from conftest import DEMO, host_client


def _owner_admin():
    client = host_client("alpha.localhost")
    client.post("/accounts/login/", {"login": DEMO["alpha"][1], "password": DEMO["alpha"][2]})
    return client


def test_owner_pays_a_top_up_on_site_a_and_comes_back(site_a):
    before = alpha_balance_at_site_a()
    with schema_context("alpha"):
        connection_id = UpstreamConnection.objects.get().pk
    owner = _owner_admin()
    response = owner.post(f"/admin/branch_upstream/upstreamconnection/{connection_id}/top-up/", {"amount": "75.50"})
    assert response.status_code == 302
    pay_url = response["Location"]
    assert pay_url.startswith("http://localhost/pay/sandbox/")  # Site A's own payment page

    payer = host_client("localhost")
    path = pay_url.removeprefix("http://localhost")
    page = payer.get(path)
    assert page.status_code == 200 and b"Top up the balance of Alpha Cards" in page.content
    paid = payer.post(path, {"action": "pay"})
    assert paid.status_code == 302
    change_page = f"/admin/branch_upstream/upstreamconnection/{connection_id}/change/"
    assert paid["Location"] == f"http://alpha.localhost{change_page}?topped_up=1"
    assert alpha_balance_at_site_a() == before + Decimal("75.50")

    # Back in the shop's admin, the page shows the balance with the money just paid, not the old one.
    back = owner.get(paid["Location"].removeprefix("http://alpha.localhost"), follow=True)
    assert back.redirect_chain == [(change_page, 302)]
    shown = f"{before + Decimal('75.50')} USD"
    assert f"the balance at Site A is now {before + Decimal('75.50')}".encode() in back.content
    assert shown.encode() in back.content

    payer.post(path, {"action": "pay"})  # a second click (or a repeated callback) credits nothing more
    assert alpha_balance_at_site_a() == before + Decimal("75.50")
    with schema_context("public"):
        assert BalanceTopUp.objects.get().status == BalanceTopUp.Status.PAID


@pytest.mark.parametrize("amount", ["", "0", "-5", "abc", "100000.01"])
def test_a_bad_top_up_amount_is_a_clear_message(site_a, amount):
    with schema_context("alpha"):
        connection_id = UpstreamConnection.objects.get().pk
    owner = _owner_admin()
    response = owner.post(
        f"/admin/branch_upstream/upstreamconnection/{connection_id}/top-up/", {"amount": amount}, follow=True
    )
    assert response.status_code == 200
    assert b"between 0.01 and 100" in response.content
    with schema_context("public"):
        assert not BalanceTopUp.objects.exists()
