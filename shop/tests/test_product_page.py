"""The product page: variant cards with price and stock, wholesale hints, and a total checkout agrees with."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest
from django_tenants.utils import schema_context

from orders.models import Order
from shop.tests.builders import V, category_create, product_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def steam(alpha):
    with schema_context("alpha"):
        cards = category_create("Gift cards")
        return product_create(
            cards,
            "Steam Wallet Code",
            (
                V("US $5", "5.20", codes=0),
                V("US $10", "10.50", codes=3),
                V("US $50", "51.00", codes=12, tiers=((5, "50.00"), (10, "49.00"))),
            ),
        )


def _options(html: str) -> dict[str, str]:
    """Variant name -> the HTML of its radio card."""
    cards = html.split('data-testid="variant-option"')[1:]
    return {
        re.search(r'<span class="pr-5[^"]*">([^<]+)</span>', card).group(1): card.split("</label>")[0] for card in cards
    }


def _buy(client, product, variant, **fields):
    data = {
        "variant": variant.pk,
        "quantity": 1,
        "email": "guest@example.test",
        "lookup_password": "lookup-123",
        "payment": "sandbox",
        **fields,
    }
    return client.post(f"/p/{product.slug}/buy/", data)


def test_each_variant_card_shows_its_price_and_stock(steam, alpha_client):
    options = _options(alpha_client.get(f"/p/{steam.product.slug}/").content.decode())
    assert list(options) == ["US $5", "US $10", "US $50"]
    assert "5.20" in options["US $5"] and "Sold out" in options["US $5"]
    assert "10.50" in options["US $10"] and "3 left" in options["US $10"]
    assert "51.00" in options["US $50"] and "12 left" in options["US $50"]


def test_a_sold_out_variant_cannot_be_picked_and_the_first_in_stock_is_preselected(steam, alpha_client):
    options = _options(alpha_client.get(f"/p/{steam.product.slug}/").content.decode())
    assert re.search(r"<input[^>]*\bdisabled\b", options["US $5"])
    assert re.search(r"<input[^>]*\bchecked\b", options["US $10"])
    assert not re.search(r"<input[^>]*\bchecked\b", options["US $5"] + options["US $50"])


def test_wholesale_tiers_are_hinted_on_their_variant(steam, alpha_client):
    options = _options(alpha_client.get(f"/p/{steam.product.slug}/").content.decode())
    assert "Buy 5+: 50.00 each" in options["US $50"] and "Buy 10+: 49.00 each" in options["US $50"]
    assert "each" not in options["US $10"]


def test_the_stepper_is_bounded_by_the_product_limits_and_the_stock(steam, alpha_client):
    page = alpha_client.get(f"/p/{steam.product.slug}/").content.decode()
    quantity = re.search(r'<input type="number" name="quantity" id="id_quantity"[^>]*>', page).group(0)
    assert 'min="1"' in quantity and 'max="3"' in quantity  # US $10 is preselected: 3 left (product max 20)
    assert 'data-max="12"' in _options(page)["US $50"]
    assert 'data-testid="total">10.50<' in page


def test_a_sold_out_product_says_so_and_cannot_be_bought(alpha, alpha_client):
    with schema_context("alpha"):
        gone = product_create(category_create("Game top-ups"), "PUBG UC", (V("660 UC", "9.99", codes=0),)).product
    page = alpha_client.get(f"/p/{gone.slug}/").content.decode()
    assert 'data-testid="sold-out"' in page
    assert re.search(r'<button type="submit"[^>]*\bdisabled\b[^>]*>\s*Sold out</button>', page)


def test_the_wholesale_price_the_page_computes_is_what_checkout_charges(steam, alpha_client):
    page = alpha_client.get(f"/p/{steam.product.slug}/").content.decode()
    steps = json.loads(re.search(r'data-steps="([^"]*)"', _options(page)["US $50"]).group(1).replace("&quot;", '"'))
    assert steps == [[5, "50.00"], [10, "49.00"]]
    response = _buy(alpha_client, steam.product, steam.variants[2], quantity=10, expected_price=steps[1][1])
    assert response.status_code == 302, response.content.decode()[:2000]
    with schema_context("alpha"):
        assert Order.objects.get().total == Decimal("490.00")


def test_more_than_the_stock_gets_a_clear_message_and_no_order(steam, alpha_client):
    response = _buy(alpha_client, steam.product, steam.variants[1], quantity=4, expected_price="10.50")
    assert response.status_code == 400
    assert 'data-error-for="quantity">Sorry, only 3 left in stock.<' in response.content.decode()
    with schema_context("alpha"):
        assert not Order.objects.exists()


def test_a_rejected_form_keeps_the_customers_choice(steam, alpha_client):
    response = _buy(alpha_client, steam.product, steam.variants[2], quantity=6, email="not-an-email")
    assert response.status_code == 400
    page = response.content.decode()
    assert re.search(r"<input[^>]*\bchecked\b", _options(page)["US $50"])
    assert 'value="6"' in page and 'data-testid="total">300.00<' in page
