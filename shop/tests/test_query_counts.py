"""Storefront pages cost a fixed number of queries, however big the catalog or the product."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import schema_context

from catalog.models import PriceList, PriceRule
from shop.tests.builders import V, category_create, product_create

pytestmark = pytest.mark.django_db

# Statements a page may run (besides django-tenants' `SET search_path`): today 8 to 12. Any query per
# product or variant would exceed it at 20 products.
MAX_QUERIES = 14


def _queries(client, url: str) -> int:
    client.get(url)  # warm up: host lookup cache, session
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, url
    return len([q for q in captured.captured_queries if not q["sql"].startswith("SET search_path")])


def _stocked(category, name: str, variants: int = 2):
    specs = tuple(V(f"Option {i}", f"{10 + i}.00", codes=2, tiers=((5, f"{9 + i}.50"),)) for i in range(variants))
    return product_create(category, name, specs)


def _pages(category, product) -> dict[str, str]:
    return {"home": "/", "category": f"/c/{category.slug}/", "product": f"/p/{product.slug}/"}


def test_home_category_and_product_pages_do_not_grow_with_the_catalog(alpha, alpha_client):
    with schema_context("alpha"):
        prices = PriceList.objects.create(name="Storefront", code="storefront", is_default=True)
        root = category_create("Gift cards")
        PriceRule.objects.create(price_list=prices, scope="category", category=root, mode="percent", value=20)
        child = category_create("Steam", parent=root)
        first = _stocked(child, "Steam Wallet")
        _stocked(root, "Apple Gift Card")
    small = {page: _queries(alpha_client, url) for page, url in _pages(root, first.product).items()}

    with schema_context("alpha"):
        for i in range(17):
            _stocked(child if i % 2 else root, f"Card {i}")
        big = _stocked(child, "Steam Wallet Deluxe", variants=12)  # the 20th product, with 12 variants
    large = {page: _queries(alpha_client, url) for page, url in _pages(root, big.product).items()}

    assert large == small
    assert max(large.values()) <= MAX_QUERIES, large


def test_category_listing_shows_every_product_of_its_subtree(alpha, alpha_client):
    with schema_context("alpha"):
        root = category_create("Gift cards")
        child = category_create("Steam", parent=root)
        _stocked(child, "Steam Wallet")
        _stocked(root, "Apple Gift Card")
        elsewhere = category_create("Game top-ups")
        _stocked(elsewhere, "PUBG UC")
    page = alpha_client.get(f"/c/{root.slug}/").content.decode()
    assert page.count('data-testid="product-card"') == 2
    assert "Steam Wallet" in page and "Apple Gift Card" in page and "PUBG UC" not in page


def test_a_long_category_is_paged_and_a_bad_page_number_is_not_an_error(alpha, alpha_client, monkeypatch):
    import catalog.selectors

    monkeypatch.setattr(catalog.selectors, "CATEGORY_PAGE_SIZE", 2)
    with schema_context("alpha"):
        root = category_create("Gift cards")
        for name in ("Card A", "Card B", "Card C"):
            _stocked(root, name, variants=1)
    first = alpha_client.get(f"/c/{root.slug}/").content.decode()
    assert first.count('data-testid="product-card"') == 2 and "3 products" in first
    assert "Card A" in first and "Card C" not in first and 'href="?page=2"' in first
    second = alpha_client.get(f"/c/{root.slug}/?page=2").content.decode()
    assert second.count('data-testid="product-card"') == 1 and "Card C" in second
    for bad in ("abc", "0", "99"):
        assert alpha_client.get(f"/c/{root.slug}/?page={bad}").status_code == 200
