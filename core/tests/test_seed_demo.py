"""`manage.py seed_demo`: a realistic demo per shop, and running it again changes nothing."""

import json
from io import StringIO

import pytest
from django.apps import apps
from django.core.management import call_command
from django_tenants.utils import schema_context

from conftest import DEMO
from core.management.commands import seed_demo

pytestmark = pytest.mark.django_db

SEEDED_APPS = ("catalog", "cardvault", "orders", "payments", "ledger")


@pytest.fixture(autouse=True)
def _session_owners(monkeypatch):
    # The session's branches belong to the test owners; the demo must reuse them, not collide with them.
    branches = [(slug, name, email, password) for slug, (name, email, password) in DEMO.items()]
    monkeypatch.setattr(seed_demo, "DEMO_BRANCHES", branches)


def _seed() -> list[dict]:
    out = StringIO()
    call_command("seed_demo", "--json", stdout=out)
    return json.loads(out.getvalue())


def _row_counts() -> dict[str, int]:
    counts = {}
    for schema in ("public", *DEMO):
        with schema_context(schema):
            for app in SEEDED_APPS:
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
