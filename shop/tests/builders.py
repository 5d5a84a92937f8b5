"""Catalog builders for storefront tests: run them inside ``schema_context(<shop>)``."""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field
from decimal import Decimal

from cardvault.services import codes_parse_text, import_commit
from catalog.models import Category, Product, Variant, WholesaleTier

_seq = itertools.count(1)


@dataclass(frozen=True)
class V:
    """A variant to build: list price, codes to stock, wholesale breaks ``(from quantity, unit price)``."""

    name: str
    price: str
    codes: int = 5
    tiers: tuple[tuple[int, str], ...] = ()
    cost: str = "1.00"


@dataclass
class Built:
    product: Product
    variants: list[Variant]
    codes: dict[int, list[str]] = field(default_factory=dict)  # variant pk -> its codes


def category_create(name: str, *, parent: Category | None = None, icon: str = "", is_active: bool = True) -> Category:
    n = next(_seq)
    return Category.objects.create(name=name, slug=f"cat-{n}", parent=parent, icon=icon, is_active=is_active)


def product_create(
    category: Category,
    name: str,
    variants: tuple[V, ...] = (V("Standard", "10.00"),),
    *,
    is_active: bool = True,
    min_quantity: int = 1,
    max_quantity: int = 20,
) -> Built:
    """A product with its variants, tiers and codes imported into the vault (real import path)."""
    n = next(_seq)
    product = Product.objects.create(
        category=category,
        name=name,
        slug=f"product-{n}",
        is_active=is_active,
        min_quantity=min_quantity,
        max_quantity=max_quantity,
        description="Redeem on the official site. Codes never expire.",
    )
    built = Built(product=product, variants=[])
    for i, spec in enumerate(variants):
        variant = Variant.objects.create(
            product=product,
            sku=f"SKU-{n}-{i}",
            name=spec.name,
            price=Decimal(spec.price),
            cost=Decimal(spec.cost),
            sort_order=i,
        )
        for from_quantity, unit_price in spec.tiers:
            WholesaleTier.objects.create(variant=variant, min_quantity=from_quantity, unit_price=Decimal(unit_price))
        codes = [f"C{n}-{i}-{k:03d}-{secrets.token_hex(4).upper()}" for k in range(spec.codes)]
        if codes:
            import_commit(
                variant=variant, parsed=codes_parse_text("\n".join(codes)), unit_cost=Decimal(spec.cost), source="paste"
            )
        built.variants.append(variant)
        built.codes[variant.pk] = codes
    return built
