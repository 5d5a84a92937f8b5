"""Storefront read models built on the catalog selectors: what the product page's buy box shows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal

from catalog.pricing import PriceBook, variant_tiers
from catalog.selectors import ProductCard, VariantView


@dataclass
class VariantChoice:
    view: VariantView
    # (from quantity, unit price) for every wholesale break that lowers the price, quoted by the pricing
    # engine, so the page's live total is exactly what `order_place` will charge.
    price_steps: list[tuple[int, Decimal]]
    max_quantity: int  # the product's limit, capped by stock
    selected: bool = False

    def unit_price(self, quantity: int) -> Decimal:
        price = self.view.quote.unit_price
        for from_quantity, step_price in self.price_steps:
            if quantity >= from_quantity:
                price = step_price
        return price

    @property
    def steps_json(self) -> str:
        return json.dumps([[q, str(p)] for q, p in self.price_steps])


@dataclass
class BuyBox:
    choices: list[VariantChoice]
    selected: VariantChoice | None
    quantity: int

    @property
    def unit_price(self) -> Decimal | None:
        return self.selected.unit_price(self.quantity) if self.selected else None

    @property
    def total(self) -> Decimal | None:
        return self.unit_price * self.quantity if self.selected else None


def product_buy_box(card: ProductCard, *, variant_id: int | None = None, quantity: int | None = None) -> BuyBox:
    """The variant picker of ``card``: prices per quantity, stock caps, the preselected variant.

    ``variant_id`` and ``quantity`` are what the customer submitted (if anything); a sold-out or unknown
    variant falls back to the first one in stock. Two queries (the default price list and its rules).
    """
    book = PriceBook.default()
    product = card.product
    choices = []
    for view in card.variants:
        steps = []
        for tier in variant_tiers(view.variant):
            quote = book.quote(view.variant, quantity=tier.min_quantity, category_path=product.category.path)
            if quote.unit_price < view.quote.unit_price:
                steps.append((tier.min_quantity, quote.unit_price))
        cap = product.max_quantity if view.stock is None else min(product.max_quantity, view.stock)
        choices.append(VariantChoice(view=view, price_steps=steps, max_quantity=cap))
    in_stock = [c for c in choices if c.view.in_stock]
    selected = next((c for c in in_stock if c.view.variant.pk == variant_id), in_stock[0] if in_stock else None)
    if selected:
        selected.selected = True
    wanted = quantity if quantity is not None else product.min_quantity
    return BuyBox(choices=choices, selected=selected, quantity=max(wanted, 1))
