"""A reusable Site A code (one licence key sold many times) sold by a branch: each customer order
buys one use at Site A; the branch's vault holds the code once, with exactly the uses it bought."""

from __future__ import annotations

from decimal import Decimal

from django_tenants.utils import schema_context

from branch_api.upstream.models import UpstreamPurchase, UpstreamSelection
from branch_api.upstream.services import FulfilOutcome, branch_markup_set, selection_add, sync_full, upstream_fulfil
from cardvault.models import Card
from cardvault.services import cards_reveal
from catalog.models import Variant
from ledger.models import Account
from ledger.services import ledger_check
from orders.models import Order
from orders.selectors import order_delivered_codes
from tests.commerce import pay, place, product_with_codes

from .conftest import alpha_balance_at_site_a, show_everything_to_alpha, top_up

D = Decimal


def _shop_sells_a_reusable_code(max_uses: int = 10) -> tuple[Variant, Variant, str]:
    with schema_context("public"):
        remote = product_with_codes(codes=1, reusable=True, max_uses=max_uses, cost="8.00", price="10.00")
        code = cards_reveal(cards=[Card.objects.get(variant=remote)], channel="admin")[0].code
    show_everything_to_alpha()
    top_up("100.00", f"reusable-{remote.pk}")
    with schema_context("alpha"):
        selection_add(kind=UpstreamSelection.Kind.PRODUCT, remote_id=remote.product_id)
        branch_markup_set(percent=D("50"))
        sync_full()
        return remote, Variant.objects.get(upstream_id=remote.pk), code


def _sell_one(local: Variant) -> Order:
    with schema_context("alpha"):
        order = place(local, 1)
        assert pay(order) == (True, "ok")
        assert upstream_fulfil(order_id=order.pk) == FulfilOutcome.DELIVERED
        return Order.objects.get(pk=order.pk)


def test_two_customers_of_a_branch_get_the_same_reusable_code_each_bought_once_at_site_a(site_a, queued):
    remote, local, code = _shop_sells_a_reusable_code(max_uses=10)

    first, second = _sell_one(local), _sell_one(local)

    with schema_context("alpha"):
        for order in (first, second):
            assert order.status == Order.Status.DELIVERED
            assert [c for line in order_delivered_codes(order, channel="admin") for c, _ in line.codes] == [code]
        card = Card.objects.get(variant=local)
        # Held once, with exactly the two uses bought, both used: the shop cannot sell a third.
        assert (card.reusable, card.max_uses, card.use_count, card.status) == (True, 2, 2, Card.Status.SOLD)
        assert list(UpstreamPurchase.objects.values_list("status", "codes_received")) == [("done", 1), ("done", 1)]
        revenue = Account.objects.get(code="sales_revenue").natural_balance
        cost = Account.objects.get(code="cost_of_goods").natural_balance
        owed = Account.objects.get(code="supplier_payable").natural_balance
        assert ledger_check() == []
    assert (revenue, cost, owed) == (D("30.00"), D("20.00"), D("0.00"))  # each use paid from the balance
    assert alpha_balance_at_site_a() == D("80.00")
    with schema_context("public"):
        assert Card.objects.get(variant=remote).use_count == 2
        assert ledger_check() == []


def test_a_line_served_by_a_single_code_and_a_reusable_one_is_delivered_without_an_alert(site_a, queued):
    from cardvault.services import codes_parse_text, import_commit

    remote, local, shared_code = _shop_sells_a_reusable_code(max_uses=10)
    with schema_context("public"):
        import_commit(variant=remote, parsed=codes_parse_text("SINGLE-USE-0001"), unit_cost=D("8.00"), source="paste")

    with schema_context("alpha"):
        order = place(local, 2)
        assert pay(order) == (True, "ok")
        assert upstream_fulfil(order_id=order.pk) == FulfilOutcome.DELIVERED
        order = Order.objects.get(pk=order.pk)
        codes = sorted(c for line in order_delivered_codes(order, channel="admin") for c, _ in line.codes)
        purchase = UpstreamPurchase.objects.get()
        assert ledger_check() == []
    assert codes == sorted(["SINGLE-USE-0001", shared_code])
    assert (purchase.codes_received, purchase.codes_reserved, purchase.last_error_code) == (2, 2, "")
    assert alpha_balance_at_site_a() == D("80.00")
