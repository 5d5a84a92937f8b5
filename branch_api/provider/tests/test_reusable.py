"""Reusable codes (one licence key sold many times) are sold to branches like on Site A's own
storefront: each purchase returns the code and counts one use, never more than ``max_uses``."""

from __future__ import annotations

from decimal import Decimal

from django_tenants.utils import schema_context

from branch_api.provider.models import BranchPurchase
from branch_api.provider.services import balance_account_code, terms_ensure
from branch_api.provider.tests.conftest import signed_client_for, top_up
from branch_api.provider.tests.test_api import _buy, _error
from cardvault.models import Card, CardAssignment
from cardvault.services import cards_reveal
from ledger.models import Account
from ledger.services import ledger_check
from orders.models import Order
from tenants.models import Branch
from tests.commerce import pay, place, product_with_codes
from tests.concurrency import at_once

D = Decimal


def _reusable_variant(*, max_uses: int | None, visible_to=("alpha",)):
    with schema_context("public"):
        variant = product_with_codes(codes=1, reusable=True, max_uses=max_uses, cost="8.00", price="12.00")
        for slug in visible_to:
            terms_ensure(Branch.objects.get(slug=slug)).visible_products.add(variant.product)
    return variant


def _the_code(variant) -> tuple[Card, str]:
    with schema_context("public"):
        card = Card.objects.get(variant=variant)
        return card, cards_reveal(cards=[card], channel="admin")[0].code


def _spent(*slugs: str, start: str = "500.00") -> Decimal:
    with schema_context("public"):
        return sum(
            (
                D(start) - Account.objects.get(code=balance_account_code(b.pk)).natural_balance
                for b in Branch.objects.filter(slug__in=slugs)
            ),
            D("0"),
        )


def test_a_branch_buys_a_reusable_code_and_each_purchase_counts_one_use(alpha_api):
    variant = _reusable_variant(max_uses=10)
    top_up("alpha", "100.00")
    _card, code = _the_code(variant)

    first = _buy(alpha_api, variant, reference="shared-1", key="shared-key-1", expected="12.00")
    second = _buy(alpha_api, variant, reference="shared-2", key="shared-key-2", expected="12.00")

    assert (first.status_code, second.status_code) == (201, 201), first.json()
    for response in (first, second):
        item = response.json()["order"]["items"][0]
        assert item["codes"] == [{"code": code, "secret": "", "reusable": True}]
        assert response.json()["order"]["status"] == "delivered"
    with schema_context("public"):
        assert Card.objects.get(variant=variant).use_count == 2
        assert ledger_check() == []
    assert _spent("alpha", start="100.00") == D("24.00")


def test_site_a_storefront_sales_and_branch_purchases_share_the_use_count(alpha_api):
    variant = _reusable_variant(max_uses=2)
    top_up("alpha", "100.00")
    with schema_context("public"):
        order = place(variant, 1)
        assert pay(order) == (True, "ok")
        assert Order.objects.get(pk=order.pk).status == Order.Status.DELIVERED

    assert _buy(alpha_api, variant, reference="after-shop-1", key="after-shop-key-1").status_code == 201
    assert _error(_buy(alpha_api, variant, reference="after-shop-2", key="after-shop-key-2")) == (409, "out_of_stock")
    with schema_context("public"):
        card = Card.objects.get(variant=variant)
        assert (card.use_count, card.status) == (2, Card.Status.SOLD)
    assert _spent("alpha", start="100.00") == D("12.00")  # the refused purchase charged nothing


def test_a_purchase_needing_more_shared_codes_than_exist_is_refused_and_charges_nothing(alpha_api):
    variant = _reusable_variant(max_uses=None)  # unlimited uses, but one code serves a line once
    top_up("alpha", "100.00")
    assert _error(_buy(alpha_api, variant, quantity=2, reference="two-of-one", key="two-of-one-key")) == (
        409,
        "out_of_stock",
    )
    with schema_context("public"):
        assert not BranchPurchase.objects.filter(reference="two-of-one").exists()
        assert Card.objects.get(variant=variant).use_count == 0
        assert not Order.objects.filter(source=Order.Source.BRANCH_API).exists()
    assert _spent("alpha", start="100.00") == D("0")


def test_branches_racing_for_the_last_uses_never_exceed_max_uses(live_db):
    alpha_api, beta_api = signed_client_for("alpha"), signed_client_for("beta")
    variant = _reusable_variant(max_uses=3, visible_to=("alpha", "beta"))
    top_up("alpha", "500.00")
    top_up("beta", "500.00")
    results: list[int] = []

    def buyer(api, name, i):
        response = _buy(api, variant, reference=f"uses-{name}-{i}", key=f"uses-key-{name}-{i}")
        results.append(response.status_code)

    at_once(buyer, [(api, name, i) for i in range(4) for api, name in ((alpha_api, "alpha"), (beta_api, "beta"))])
    assert sorted(results) == [201] * 3 + [409] * 5
    with schema_context("public"):
        card = Card.objects.get(variant=variant)
        assert (card.use_count, card.status) == (3, Card.Status.SOLD)
        assert CardAssignment.objects.filter(card=card).count() == 3
        assert Order.objects.filter(source=Order.Source.BRANCH_API).count() == 3  # refused ones left nothing
        assert ledger_check() == []
    assert _spent("alpha", "beta") == D("36.00")  # 3 uses at 12.00
