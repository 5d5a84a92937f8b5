"""Live search: JSON for the header's suggestions, HTML for the search page (works without JavaScript)."""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_context

from shop.tests.builders import category_create, product_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalog(alpha):
    with schema_context("alpha"):
        cards = category_create("Gift cards")
        games = category_create("Game top-ups")
        hidden = category_create("Retired", is_active=False)
        return {
            "steam": product_create(cards, "Steam Wallet Code").product,
            "apple": product_create(cards, "Apple Gift Card").product,
            "qq": product_create(games, "腾讯Q币 100").product,
            "inactive": product_create(cards, "Steam Deck Voucher", is_active=False).product,
            "in_hidden_category": product_create(hidden, "Steam Points Pack").product,
        }


def _suggest(client, query: str) -> list[str]:
    response = client.get("/search/", {"q": query}, HTTP_ACCEPT="application/json")
    assert response.status_code == 200 and response["Content-Type"].startswith("application/json")
    return [result["name"] for result in response.json()["results"]]


@pytest.mark.parametrize("query", ["stea", "STEAM", "wall", "steam wal"])
def test_suggestions_match_word_prefixes(catalog, alpha_client, query):
    assert _suggest(alpha_client, query) == ["Steam Wallet Code"]


@pytest.mark.parametrize(("query", "expected"), [("team", "Steam Wallet Code"), ("pple gi", "Apple Gift Card")])
def test_suggestions_match_substrings(catalog, alpha_client, query, expected):
    assert _suggest(alpha_client, query) == [expected]


@pytest.mark.parametrize("query", ["腾讯", "Q币", "讯Q"])
def test_suggestions_match_chinese_names_written_without_spaces(catalog, alpha_client, query):
    assert _suggest(alpha_client, query) == ["腾讯Q币 100"]


def test_suggestions_carry_the_product_url_and_category(catalog, alpha_client):
    response = alpha_client.get("/search/", {"q": "apple"}, HTTP_ACCEPT="application/json")
    assert response.json()["results"] == [
        {"name": "Apple Gift Card", "category": "Gift cards", "url": f"/p/{catalog['apple'].slug}/"}
    ]


def test_inactive_products_and_products_of_inactive_categories_are_never_suggested(catalog, alpha_client):
    assert _suggest(alpha_client, "steam") == ["Steam Wallet Code"]
    assert _suggest(alpha_client, "voucher") == []
    assert _suggest(alpha_client, "points") == []
    assert _suggest(alpha_client, "retired") == []


def test_one_character_is_not_enough(catalog, alpha_client):
    assert _suggest(alpha_client, "s") == []


def test_the_search_page_lists_results_as_links_without_javascript(catalog, alpha_client):
    page = alpha_client.get("/search/", {"q": "q币"}).content.decode()
    assert f'href="/p/{catalog["qq"].slug}/"' in page
    assert "Steam Wallet Code" not in page
    assert 'name="q"' in page and 'value="q币"' in page  # the query stays in the box
    assert "Nothing found." in alpha_client.get("/search/", {"q": "zzzz"}).content.decode()
