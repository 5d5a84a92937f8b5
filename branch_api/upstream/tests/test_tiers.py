"""Wholesale tiers across the network: Site A sends each branch its quantity breaks at the branch's
cost, the sync keeps them on the copy, the branch storefront marks them up like any cost, and Site A
charges a purchase that reaches a break exactly that break's cost."""

from __future__ import annotations

from decimal import Decimal

from django_tenants.utils import schema_context

from branch_api.provider.models import BranchPurchase
from branch_api.upstream.client import UpstreamClient
from branch_api.upstream.models import UpstreamPurchase, UpstreamSelection
from branch_api.upstream.selectors import connection_get
from branch_api.upstream.services import (
    FulfilOutcome,
    branch_markup_set,
    selection_add,
    sync_full,
    sync_incremental,
    upstream_fulfil,
)
from catalog.models import PriceList, PriceRule, Variant, WholesaleTier
from catalog.pricing import PriceBook
from conftest import host_client
from ledger.models import Account
from ledger.services import ledger_check
from orders.models import Order
from tests.commerce import pay, place

from .conftest import alpha_balance_at_site_a, show_everything_to_alpha, site_a_variant, top_up

D = Decimal


def _site_a_variant_with_tiers(codes: int = 12) -> Variant:
    """Site A sells at 10.00 (alpha's cost: no price list of its own), its cost 8.00; breaks from
    5 at 9.00, from 10 at 8.50, from 15 at 9.50 (no break: dearer than 8.50) and from 20 at 7.00
    (below Site A's cost: floored to 8.00)."""
    remote = site_a_variant(price="10.00", codes=codes)
    with schema_context("public"):
        for min_quantity, unit_price in ((5, "9.00"), (10, "8.50"), (15, "9.50"), (20, "7.00")):
            WholesaleTier.objects.create(variant=remote, min_quantity=min_quantity, unit_price=D(unit_price))
    return remote


def _shop_sells(remote: Variant, *, markup: str = "50") -> Variant:
    show_everything_to_alpha()
    with schema_context("alpha"):
        selection_add(kind=UpstreamSelection.Kind.PRODUCT, remote_id=remote.product_id)
        branch_markup_set(percent=D(markup))
        sync_full()
        return Variant.objects.get(upstream_id=remote.pk)


def _copy_tiers(local: Variant) -> list[tuple[int, Decimal | None, Decimal | None]]:
    with schema_context("alpha"):
        return list(WholesaleTier.objects.filter(variant=local).values_list("min_quantity", "unit_cost", "unit_price"))


def _storefront_price(local: Variant, quantity: int) -> Decimal:
    with schema_context("alpha"):
        variant = Variant.objects.select_related("product__category").prefetch_related("tiers").get(pk=local.pk)
        return PriceBook.default().quote(variant, quantity=quantity).unit_price


def test_the_product_payload_carries_the_branch_tiers_at_its_cost(site_a):
    remote = _site_a_variant_with_tiers()
    show_everything_to_alpha()
    with schema_context("alpha"):
        products = UpstreamClient(connection_get()).products(page=1, page_size=50)["results"]
    variant = next(v for p in products for v in p["variants"] if v["id"] == remote.pk)
    assert variant["cost"] == "10.00"
    assert variant["tiers"] == [
        {"min_quantity": 5, "cost": "9.00"},
        {"min_quantity": 10, "cost": "8.50"},
        {"min_quantity": 20, "cost": "8.00"},  # never below Site A's own cost
    ]


def test_the_payload_tiers_follow_the_branch_price_list(site_a):
    remote = _site_a_variant_with_tiers()
    show_everything_to_alpha()
    with schema_context("public"):
        from branch_api.provider.services import price_list_for
        from tenants.models import Branch

        price_list = price_list_for(Branch.objects.get(slug="alpha"))
        PriceRule.objects.create(price_list=price_list, scope=PriceRule.Scope.ALL, mode="percent", value=D("10"))
    with schema_context("alpha"):
        products = UpstreamClient(connection_get()).products(page=1, page_size=50)["results"]
    variant = next(v for p in products for v in p["variants"] if v["id"] == remote.pk)
    # alpha's cost is Site A's cost + 10 % = 8.80: the break from 5 (9.00) is no break for alpha.
    assert variant["cost"] == "8.80"
    assert variant["tiers"] == [{"min_quantity": 10, "cost": "8.50"}, {"min_quantity": 20, "cost": "8.00"}]


def test_the_sync_stores_the_tiers_on_the_copy_and_follows_their_changes(site_a):
    remote = _site_a_variant_with_tiers()
    local = _shop_sells(remote)
    assert _copy_tiers(local) == [(5, D("9.00"), None), (10, D("8.50"), None), (20, D("8.00"), None)]

    with schema_context("public"):
        WholesaleTier.objects.filter(variant=remote, min_quantity=5).delete()
        WholesaleTier.objects.filter(variant=remote, min_quantity=10).update(unit_price=D("8.20"))
        remote.save()  # as the variant's admin page does when its tiers are edited
    with schema_context("alpha"):
        result = sync_incremental()
    assert not result.full and result.updated == 1
    assert _copy_tiers(local) == [(10, D("8.20"), None), (20, D("8.00"), None)]

    with schema_context("alpha"):
        again = sync_full()
    assert (again.updated, again.unchanged) == (0, 1)  # nothing rewritten when nothing changed


def test_the_storefront_marks_up_each_break_and_never_sells_below_its_cost(site_a):
    remote = _site_a_variant_with_tiers()
    local = _shop_sells(remote, markup="50")
    assert [_storefront_price(local, n) for n in (1, 4, 5, 9, 10, 20)] == [
        D("15.00"),
        D("15.00"),
        D("13.50"),  # 9.00 + 50 %
        D("13.50"),
        D("12.75"),  # 8.50 + 50 %
        D("12.00"),  # 8.00 + 50 %
    ]
    with schema_context("alpha"):
        slug = local.product.slug
    page = host_client("alpha.localhost").get(f"/p/{slug}/")
    html = page.content.decode()
    assert page.status_code == 200 and "13.50" in html and "12.75" in html

    with schema_context("alpha"):
        # A fixed price below the cost of a break is raised to that break's cost, not to the base cost.
        rule_list = PriceList.objects.get(is_default=True)
        PriceRule.objects.create(price_list=rule_list, scope="variant", variant=local, mode="fixed_price", value=D("5"))
    assert [_storefront_price(local, n) for n in (1, 10)] == [D("10.00"), D("8.50")]


def test_a_purchase_of_n_is_charged_the_tier_cost_by_site_a(site_a, queued):
    remote = _site_a_variant_with_tiers(codes=12)
    local = _shop_sells(remote, markup="50")
    top_up("100.00", f"tiers-{remote.pk}")
    with schema_context("alpha"):
        order = place(local, 10)
        assert pay(order) == (True, "ok")
        line = order.lines.get()
        assert (line.unit_price, line.unit_cost, order.total) == (D("12.75"), D("8.50"), D("127.50"))
        assert upstream_fulfil(order_id=order.pk) == FulfilOutcome.DELIVERED
        order.refresh_from_db()
        purchase = UpstreamPurchase.objects.get(order_line=line)
        revenue = Account.objects.get(code="sales_revenue").natural_balance
        cost = Account.objects.get(code="cost_of_goods").natural_balance
        assert ledger_check() == []
    assert order.status == Order.Status.DELIVERED and purchase.expected_total == D("85.00")
    assert (revenue, cost) == (D("127.50"), D("85.00"))
    with schema_context("public"):
        sold = BranchPurchase.objects.select_related("order").get(branch__slug="alpha", reference=purchase.reference)
        assert sold.total == D("85.00") and sold.order.lines.get().unit_price == D("8.50")
        assert ledger_check() == []
    assert alpha_balance_at_site_a() == D("15.00")
