"""The catalog admin on a branch: the category tree, bulk price changes and price-rule validation."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django_tenants.utils import schema_context

from catalog.models import Category, PriceList, Product, Variant
from catalog.services import variants_adjust_price

pytestmark = pytest.mark.django_db

VARIANTS_URL = "/admin/catalog/variant/"


@pytest.fixture
def variants():
    with schema_context("alpha"):
        category = Category.objects.create(name="Gift cards", slug="gift-cards")
        product = Product.objects.create(category=category, name="Steam card", slug="steam-card")
        return [
            Variant.objects.create(product=product, sku="S-10", name="$10", price=Decimal("10.00"), cost="8.00"),
            Variant.objects.create(product=product, sku="S-20", name="$20", price=Decimal("19.99"), cost="16.00"),
            Variant.objects.create(product=product, sku="S-50", name="$50", price=Decimal("50.00"), cost="40.00"),
        ]


def _prices(field: str = "price") -> dict[str, Decimal]:
    with schema_context("alpha"):
        return dict(Variant.objects.values_list("sku", field))


def _adjust(client, ids: list[int], **form):
    return client.post(VARIANTS_URL, {"action": "adjust_prices", "_selected_action": ids, "apply": "1", **form})


def test_adjust_prices_asks_for_the_change_before_touching_prices(staff_client, variants):
    response = staff_client.post(
        VARIANTS_URL, {"action": "adjust_prices", "_selected_action": [variants[0].pk], "index": 0}
    )

    assert response.status_code == 200
    assert response.templates[0].name == "admin/catalog/variant/adjust_prices.html"
    assert "S-10" in response.content.decode()
    assert _prices()["S-10"] == Decimal("10.00")


def test_adjust_prices_by_percent_changes_only_the_selected_variants(staff_client, variants):
    response = _adjust(staff_client, [variants[0].pk, variants[1].pk], field="price", mode="percent", value="10")

    assert response.status_code == 302
    assert _prices() == {"S-10": Decimal("11.00"), "S-20": Decimal("21.99"), "S-50": Decimal("50.00")}


def test_adjust_prices_never_goes_below_zero(staff_client, variants):
    _adjust(staff_client, [variants[0].pk], field="cost", mode="percent", value="-100")

    with schema_context("alpha"):
        variants_adjust_price(variant_ids=[variants[1].pk], percent=Decimal("-250"), field="cost")

    assert _prices("cost") == {"S-10": Decimal("0.00"), "S-20": Decimal("0.00"), "S-50": Decimal("40.00")}


def test_adjust_prices_can_set_the_cost(staff_client, variants):
    _adjust(staff_client, [v.pk for v in variants], field="cost", mode="set", value="7.50")

    assert set(_prices("cost").values()) == {Decimal("7.50")}
    assert _prices()["S-50"] == Decimal("50.00")


def test_adjust_prices_refuses_a_negative_amount(staff_client, variants):
    response = _adjust(staff_client, [variants[0].pk], field="price", mode="set", value="-1")

    assert response.status_code == 200
    assert "An amount cannot be negative." in response.content.decode()
    assert _prices()["S-10"] == Decimal("10.00")


def test_price_rule_without_its_target_is_refused_by_the_inline(staff_client, variants):
    data = {
        "name": "Storefront",
        "code": "storefront",
        "rules-TOTAL_FORMS": "1",
        "rules-INITIAL_FORMS": "0",
        "rules-MIN_NUM_FORMS": "0",
        "rules-MAX_NUM_FORMS": "1000",
        "rules-0-scope": "product",
        "rules-0-mode": "percent",
        "rules-0-value": "20",
        "rules-0-rounding": "none",
        "rules-0-is_active": "on",
    }

    response = staff_client.post("/admin/catalog/pricelist/add/", data)

    assert response.status_code == 200
    assert "Choose the product this rule applies to." in response.content.decode()
    with schema_context("alpha"):
        assert not PriceList.objects.exists()

    data["rules-0-product"] = str(variants[0].product_id)
    assert staff_client.post("/admin/catalog/pricelist/add/", data).status_code == 302
    with schema_context("alpha"):
        assert PriceList.objects.get().rules.get().product_id == variants[0].product_id


def test_category_changelist_shows_the_tree_in_path_order(staff_client):
    with schema_context("alpha"):
        games = Category.objects.create(name="Kappa games", slug="games")
        Category.objects.create(name="Kappa apps", slug="apps")  # created after, so after games' subtree
        Category.objects.create(name="Kappa steam", slug="steam", parent=games)

    body = staff_client.get("/admin/catalog/category/").content.decode()

    assert body.index("Kappa games") < body.index("Kappa steam") < body.index("Kappa apps")
    assert 'padding-left: 1.5rem">' in body  # the child is indented


def test_catalog_add_and_change_pages_render(staff_client, variants):
    variant = variants[0]
    with schema_context("alpha"):
        spec = variant.product.specs.create(name="Region")
    pages = [
        "/admin/catalog/category/add/",
        f"/admin/catalog/category/{variant.product.category_id}/change/",
        "/admin/catalog/brand/add/",
        "/admin/catalog/product/add/",
        f"/admin/catalog/product/{variant.product_id}/change/",
        f"/admin/catalog/spec/{spec.pk}/change/",
        f"/admin/catalog/variant/{variant.pk}/change/",
        "/admin/catalog/pricelist/add/",
    ]
    for page in pages:
        assert staff_client.get(page).status_code == 200, page
    product_page = staff_client.get(f"/admin/catalog/product/{variant.product_id}/change/").content.decode()
    assert "S-20" in product_page and 'name="variants-0-manual_stock"' in product_page
