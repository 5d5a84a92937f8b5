"""Header, category navigation and the order page as served (no JavaScript needed)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django_tenants.utils import schema_context

from cardvault.models import Card
from cardvault.services import cards_reveal
from shop.tests.builders import V, category_create, product_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def steam(alpha):
    with schema_context("alpha"):
        return product_create(category_create("Gift cards"), "Steam Wallet Code", (V("US $10", "10.50", codes=5),))


def _pay_for(client, built, quantity: int = 2) -> str:
    """Buy through the storefront and the sandbox gateway; returns the order number."""
    data = {
        "variant": built.variants[0].pk,
        "quantity": quantity,
        "expected_price": "10.50",
        "email": "guest@example.test",
        "lookup_password": "lookup-123",
        "payment": "sandbox",
    }
    gateway = client.post(f"/p/{built.product.slug}/buy/", data)
    assert gateway.status_code == 302, gateway.content.decode()[:2000]
    paid = client.post(gateway["Location"], {"action": "pay"})
    return paid["Location"].rstrip("/").rsplit("/", 1)[1]


def _codes_of(number: str) -> list[str]:
    with schema_context("alpha"):
        cards = Card.objects.filter(assignments__order_line__order__number=number).order_by("assignments__pk")
        return [c.code for c in cards_reveal(cards=list(cards), channel="admin")]


def test_guests_get_find_my_order_and_customers_get_my_orders(steam, alpha_client):
    guest = alpha_client.get("/").content.decode()
    assert 'href="/orders/lookup/" data-testid="nav-find-order"' in guest
    assert 'data-testid="nav-my-orders"' not in guest

    with schema_context("alpha"):
        get_user_model().objects.create_user(username="c1", email="c1@example.test", password="Customer-Pass-1")
    alpha_client.post("/accounts/login/", {"login": "c1@example.test", "password": "Customer-Pass-1"})
    customer = alpha_client.get("/").content.decode()
    assert 'href="/orders/mine/" data-testid="nav-my-orders"' in customer
    assert 'data-testid="nav-find-order"' not in customer


def test_the_category_tree_marks_the_current_category_and_collapses_on_phones(alpha, alpha_client):
    with schema_context("alpha"):
        root = category_create("Gift cards")
        child = category_create("Steam", parent=root)
    page = alpha_client.get(f"/c/{child.slug}/").content.decode()
    assert 'data-testid="category-nav-mobile"' in page and "<details" in page
    assert f'href="/c/{child.slug}/" style="margin-left: 1rem" aria-current="page"' in page
    assert f'href="/c/{root.slug}/" style="margin-left: 0rem"' in page


def test_the_order_page_offers_each_code_copy_all_and_the_txt(steam, alpha_client):
    number = _pay_for(alpha_client, steam)
    codes = _codes_of(number)
    page = alpha_client.get(f"/orders/{number}/").content.decode()
    for code in codes:
        assert f'data-copy="{code}"' in page
    assert f'data-copy="{codes[0]}\n{codes[1]}" data-copied-label="Copied" data-testid="copy-all"' in page
    assert "Your codes are shown only in this browser." in page
    assert alpha_client.get(f"/orders/{number}/codes.txt").content.decode() == f"{codes[0]}\n{codes[1]}\n"


def test_another_browser_sees_the_status_but_no_codes_and_no_copy_buttons(steam, alpha_client):
    number = _pay_for(alpha_client, steam, quantity=1)
    page = Client(HTTP_HOST="alpha.localhost").get(f"/orders/{number}/").content.decode()
    assert 'data-testid="order-status"' in page and "Delivered" in page
    assert "data-copy" not in page and _codes_of(number)[0] not in page
    assert 'href="/orders/lookup/"' in page
