"""Catalog writes that staff run in bulk (the admin's actions call these)."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from django.db import transaction
from django.db.models import DecimalField, ExpressionWrapper, F, Value
from django.db.models.functions import Greatest, Round
from django.utils import timezone

from catalog.models import MONEY, ZERO, Variant
from catalog.pricing import money

PRICE_FIELDS = ("price", "cost")


def _check_field(field: str) -> None:
    if field not in PRICE_FIELDS:
        raise ValueError(f"field must be one of {PRICE_FIELDS}, not {field!r}")


@transaction.atomic
def variants_adjust_price(*, variant_ids: Iterable[int], percent: Decimal, field: str = "price") -> int:
    """Change ``field`` (price or cost) of the variants by ``percent`` (+10 raises by 10 %, -5 lowers by 5 %).

    One UPDATE with ``F()``: concurrent edits are not lost, the result is rounded half-up to the cent in
    the database and never goes below zero. Returns the number of variants changed.
    """
    _check_field(field)
    factor = (Decimal(100) + Decimal(percent)) / Decimal(100)
    adjusted = ExpressionWrapper(F(field) * Value(factor), output_field=DecimalField(**MONEY))
    # `updated` by hand: update() skips auto_now, and the branches' change feed follows it.
    return Variant.objects.filter(pk__in=list(variant_ids)).update(
        **{field: Greatest(Round(adjusted, 2), Value(ZERO), output_field=DecimalField(**MONEY))},
        updated=timezone.now(),
    )


@transaction.atomic
def variants_set_price(*, variant_ids: Iterable[int], amount: Decimal, field: str = "cost") -> int:
    """Set ``field`` (price or cost) of the variants to ``amount`` (e.g. a new supplier cost)."""
    _check_field(field)
    if amount < 0:
        raise ValueError("amount must not be negative")
    return Variant.objects.filter(pk__in=list(variant_ids)).update(**{field: money(amount)}, updated=timezone.now())
