"""`manage.py seed_demo`: a realistic demo per shop, and running it again changes nothing."""

import json
from io import StringIO

import pytest
from django.apps import apps
from django.core.management import call_command
from django_tenants.utils import schema_context

from conftest import DEMO
from core.management.commands import seed_demo

SEEDED_APPS = ("catalog", "cardvault", "orders", "payments", "ledger", "branch_upstream")
TENANT_ONLY = {"branch_upstream"}


@pytest.fixture(autouse=True)
def _session_owners(monkeypatch, live_db):
    # Real commits: the demo's branches call Site A through the API, never inside a transaction.
    # The session's branches belong to the test owners; the demo must reuse them, not collide with them.
    branches = [(slug, name, email, password) for slug, (name, email, password) in DEMO.items()]
    monkeypatch.setattr(seed_demo, "DEMO_BRANCHES", branches)
    yield
    from branch_api.provider.models import BranchTerms

    # Terms outlive a live test (kept with the session's branches): later tests expect beta's own channels.
    with schema_context("public"):
        BranchTerms.objects.update(mode=BranchTerms.Mode.OWN_GATEWAY)


def _seed() -> list[dict]:
    out = StringIO()
    call_command("seed_demo", "--json", stdout=out)
    return json.loads(out.getvalue())


def _row_counts() -> dict[str, int]:
    counts = {}
    for schema in ("public", *DEMO):
        with schema_context(schema):
            for app in SEEDED_APPS:
                if schema == "public" and app in TENANT_ONLY:
                    continue
                for model in apps.get_app_config(app).get_models():
                    counts[f"{schema}.{model._meta.label}"] = model.objects.count()
    return counts


def test_second_run_changes_no_row_counts():
    _seed()
    first = _row_counts()

    _seed()

    assert _row_counts() == first
    assert first["alpha.catalog.Product"] >= 10 and first["public.cardvault.Card"] > 0


def test_json_output_lists_site_a_and_both_branches():
    shops = _seed()

    assert [shop["login"] for shop in shops] == ["admin@cardmesh.local", *(email for _, email, _ in DEMO.values())]
    assert all(shop["url"].startswith("http") and shop["password"] for shop in shops)


def test_alpha_has_stocked_variants_and_a_delivered_order():
    from cardvault.services import variant_stock
    from catalog.models import PriceList, Product, Variant
    from ledger.services import ledger_check
    from orders.models import Order

    _seed()

    with schema_context("alpha"):
        stock = variant_stock(Variant.objects.values_list("pk", flat=True))
        assert sum(1 for units in stock.values() if units is None or units > 0) >= 9
        assert Variant.objects.filter(product__slug="steam-wallet-gift-card").count() == 9
        assert Order.objects.filter(status=Order.Status.DELIVERED, lines__assignments__isnull=False).exists()
        assert Product.objects.filter(name="腾讯Q币 100").exists()
        assert PriceList.objects.get(is_default=True).rules.filter(scope="category").exists()
        assert ledger_check() == []


def test_the_demo_network_sells_site_a_products_with_each_branch_markup():
    from decimal import Decimal

    from branch_api.provider.services import branch_balance_account
    from catalog.models import Product, Variant
    from catalog.pricing import PriceBook
    from ledger.services import ledger_check
    from orders.models import Order
    from tenants.models import Branch

    _seed()
    with schema_context("alpha"):
        copies = Variant.objects.filter(product__delivery_mode=Product.DeliveryMode.UPSTREAM, product__is_active=True)
        assert (
            copies.exists()
            and not copies.exclude(product__category__name__icontains="")
            .filter(product__upstream_id__isnull=True)
            .exists()
        )
        variant = (
            Variant.objects.select_related("product__category")
            .prefetch_related("tiers")
            .get(pk=copies.order_by("pk").first().pk)
        )
        assert PriceBook.default().quote(variant).unit_price == (variant.cost * Decimal("1.5")).quantize(
            Decimal("0.01")
        )
        upstream_orders = Order.objects.filter(status=Order.Status.DELIVERED, lines__delivery_mode="upstream")
        assert upstream_orders.count() == 2
        assert ledger_check() == []
    with schema_context("beta"):
        upstream_orders = Order.objects.filter(status=Order.Status.DELIVERED, lines__delivery_mode="upstream")
        assert upstream_orders.count() == 1
        assert upstream_orders.get().payment_provider == "site_a"  # beta's customers pay Site A
        assert ledger_check() == []
    with schema_context("public"):
        alpha = Branch.objects.get(slug="alpha")
        assert branch_balance_account(alpha).natural_balance < Decimal("500.00")
        # Platform-collect: the sale at +20 % was credited and the cost debited, a profit on top of 200.
        assert branch_balance_account(Branch.objects.get(slug="beta")).natural_balance > Decimal("200.00")
        assert ledger_check() == []
