"""Builders for commerce tests: products with codes in the vault, placed and paid orders."""

from __future__ import annotations

import itertools
from decimal import Decimal

from cardvault.services import codes_parse_text, import_commit
from catalog.models import Category, Product, Variant
from orders.services import CartItem, order_place
from payments.providers.sandbox import SandboxProvider
from payments.services import payment_callback_handle, payment_start

_seq = itertools.count(1)


def product_with_codes(
    *,
    codes: int = 5,
    price: str = "15.00",
    cost: str = "10.00",
    batch_cost: str | None = None,
    name: str | None = None,
    delivery_mode: str = Product.DeliveryMode.AUTOMATIC,
    reusable: bool = False,
    max_uses: int | None = None,
    checkout_fields: list | None = None,
    max_quantity: int = 20,
    category: Category | None = None,
) -> Variant:
    """A category, product and variant in the current schema, with ``codes`` codes imported."""
    n = next(_seq)
    category = category or Category.objects.create(name=f"Cards {n}", slug=f"cards-{n}")
    product = Product.objects.create(
        category=category,
        name=name or f"Gift card {n}",
        slug=f"gift-card-{n}",
        delivery_mode=delivery_mode,
        checkout_fields=checkout_fields or [],
        max_quantity=max_quantity,
    )
    variant = Variant.objects.create(
        product=product, sku=f"SKU-{n}", name=f"Variant {n}", price=Decimal(price), cost=Decimal(cost)
    )
    if codes:
        text = "\n".join(f"CODE-{n}-{i:05d}" for i in range(codes))
        import_commit(
            variant=variant,
            parsed=codes_parse_text(text),
            unit_cost=Decimal(batch_cost or cost),
            source="paste",
            reusable=reusable,
            max_uses=max_uses,
        )
    return variant


def place(variant: Variant, quantity: int = 1, **kwargs):
    kwargs.setdefault("email", "buyer@example.test")
    kwargs.setdefault("lookup_password", "lookup-pass")
    checkout_input = kwargs.pop("checkout_input", {})
    return order_place(
        items=[CartItem(variant_id=variant.pk, quantity=quantity, checkout_input=checkout_input)], **kwargs
    )


def sandbox_notification(order, *, succeeded: bool = True) -> dict:
    attempt, _url = payment_start(order=order, provider_code="sandbox")
    return SandboxProvider().notification(attempt=attempt, succeeded=succeeded)


def pay(order) -> tuple[bool, str]:
    return payment_callback_handle(provider_code="sandbox", data=sandbox_notification(order))
