"""The storefront in a real browser: live search, the buy box, payment, and taking the codes home."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from django_tenants.utils import schema_context

from orders.models import Order
from shop.tests.builders import V, category_create, product_create

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def steam(live_db):
    """Committed: a product whose second variant has 3 codes and a 2+ wholesale price."""
    with schema_context("alpha"):
        cards = category_create("Gift cards", icon="🎁")
        return product_create(
            cards,
            "Steam Wallet Code",
            (V("US $10", "10.50", codes=2), V("US $25", "25.90", codes=3, tiers=((2, "24.80"),))),
        )


def test_live_search_suggests_products_and_the_keyboard_opens_one(steam, alpha_url, page_for):
    page = page_for(alpha_url)
    page.goto("/")
    search = page.locator("#site-search-input")
    search.press_sequentially("stea", delay=30)
    option = page.get_by_role("option", name="Steam Wallet Code")
    option.wait_for()
    assert search.get_attribute("aria-expanded") == "true"
    search.press("ArrowDown")
    assert option.get_attribute("aria-selected") == "true"
    search.press("Enter")
    page.wait_for_url(f"**/p/{steam.product.slug}/")
    assert page.locator("h1").inner_text() == "Steam Wallet Code"


def test_a_guest_buys_pays_and_takes_the_codes_home(steam, alpha_url, page_for, tmp_path: Path):
    page = page_for(alpha_url, width=390, height=844)  # a phone
    page.goto("/")
    page.get_by_test_id("product-card").filter(has_text="Steam Wallet Code").click()

    # The variant picker, the quantity stepper and the live total (wholesale price from 2).
    page.get_by_test_id("variant-option").filter(has_text="US $25").click()
    assert page.get_by_test_id("total").inner_text() == "25.90"
    more = page.get_by_role("button", name="Increase quantity")
    less = page.get_by_role("button", name="Decrease quantity")
    assert less.is_disabled()  # at the minimum
    more.click()
    more.click()
    assert page.locator("#id_quantity").input_value() == "3"
    assert page.get_by_test_id("total").inner_text() == "74.40"
    assert more.is_disabled()  # only 3 in stock
    less.click()
    assert page.get_by_test_id("total").inner_text() == "49.60"

    page.locator("#id_email").fill("guest@example.test")
    page.locator("#id_lookup_password").fill("lookup-123")
    page.get_by_role("button", name="Buy now").click()

    page.get_by_role("button", name="Pay now").click()
    page.wait_for_url("**/orders/*/")
    assert page.get_by_test_id("order-status").inner_text().strip().endswith("Delivered")
    assert "shown only in this browser" in page.get_by_test_id("codes-note").inner_text()

    number = page.get_by_test_id("order-number").inner_text()
    with schema_context("alpha"):
        order = Order.objects.get(number=number)
        assert order.total == Decimal("49.60") and order.status == Order.Status.DELIVERED
    shown = page.get_by_test_id("code").all_inner_texts()
    assert len(shown) == 2 and set(shown) <= set(steam.codes[steam.variants[1].pk])

    page.get_by_role("button", name="Copy", exact=True).first.click()
    page.get_by_role("button", name="✓ Copied").first.wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == shown[0]
    page.get_by_test_id("copy-all").click()
    assert page.evaluate("navigator.clipboard.readText()") == "\n".join(shown)

    with page.expect_download() as download_info:
        page.get_by_test_id("txt-download").click()
    download = download_info.value
    assert download.suggested_filename == f"order-{number}.txt"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    assert saved.read_text(encoding="utf-8").splitlines() == shown
