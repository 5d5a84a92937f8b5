"""The one pricing engine (DESIGN §3): price lists of rules, most specific rule wins, floor >= cost.

Used for the storefront price now and by the branch network later (a branch's cost is Site A's
price list applied to Site A's cost; the branch's own list turns that cost into customer prices).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

from django.db.models import Prefetch

from catalog.models import PriceList, PriceRule, Variant, WholesaleTier

CENT = Decimal("0.01")
SPECIFICITY = {
    PriceRule.Scope.VARIANT: 3,
    PriceRule.Scope.PRODUCT: 2,
    PriceRule.Scope.CATEGORY: 1,
    PriceRule.Scope.ALL: 0,
}


def money(value: Decimal) -> Decimal:
    """The one rounding helper: ROUND_HALF_UP to the cent, applied once at the edge."""
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Quote:
    unit_price: Decimal
    cost: Decimal
    rule_id: int | None
    rule_label: str
    clamped: bool  # the rule would have priced below cost; the price was raised to cost

    @property
    def margin(self) -> Decimal:
        return self.unit_price - self.cost


def _round(price: Decimal, rounding: str) -> Decimal:
    if rounding == PriceRule.Rounding.WHOLE:
        return price.quantize(Decimal("1"), rounding=ROUND_CEILING)
    if rounding == PriceRule.Rounding.ENDING_99:
        whole = price.quantize(Decimal("1"), rounding=ROUND_CEILING)
        candidate = whole - CENT
        return candidate if candidate >= price else whole + Decimal("0.99")
    return money(price)


def _apply(rule: PriceRule, cost: Decimal) -> Decimal:
    if rule.mode == PriceRule.Mode.FIXED_PRICE:
        raw = rule.value
    elif rule.mode == PriceRule.Mode.FIXED_MARKUP:
        raw = cost + rule.value
    else:
        raw = cost * (Decimal(100) + rule.value) / Decimal(100)
    return _round(raw, rule.rounding)


class PriceBook:
    """A price list's active rules, loaded once, answering quotes for many variants without queries."""

    def __init__(self, price_list: PriceList | None):
        self.price_list = price_list
        self.rules: list[PriceRule] = []
        if price_list is not None:
            self.rules = list(price_list.rules.filter(is_active=True).select_related("category").order_by("pk"))

    @classmethod
    def default(cls) -> PriceBook:
        return cls(PriceList.objects.filter(is_default=True).first())

    def rule_for(self, variant: Variant, category_path: str) -> PriceRule | None:
        """Variant > product > deepest category containing the product > all; ties: newest rule."""
        best: tuple[int, int, int] | None = None
        chosen = None
        for rule in self.rules:
            if rule.scope == PriceRule.Scope.VARIANT and rule.variant_id != variant.pk:
                continue
            if rule.scope == PriceRule.Scope.PRODUCT and rule.product_id != variant.product_id:
                continue
            depth = 0
            if rule.scope == PriceRule.Scope.CATEGORY:
                if not category_path.startswith(rule.category.path):
                    continue
                depth = rule.category.path.count("/")
            key = (SPECIFICITY[rule.scope], depth, rule.pk)
            if best is None or key > best:
                best, chosen = key, rule
        return chosen

    def quote(self, variant: Variant, *, quantity: int = 1, category_path: str | None = None) -> Quote:
        """The unit price of ``variant`` for ``quantity``: list rule or list price, then wholesale tier,
        never below cost. ``variant.product.category`` and the tiers (``tiers_prefetch``) should be prefetched."""
        tiers = variant_tiers(variant)
        cost = money(variant.cost)
        path = category_path if category_path is not None else variant.product.category.path
        rule = self.rule_for(variant, path)
        # A quantity break on cost (a branch's wholesale cost at Site A) lowers the cost the rule marks
        # up, so the shop's own markup applies to the break and the floor is the cost actually paid.
        tier_cost = _tier_value(tiers, quantity, "unit_cost")
        cost_break = tier_cost is not None and tier_cost < cost
        if cost_break:
            cost = tier_cost
        price = _apply(rule, cost) if rule else money(variant.price)
        label = str(rule) if rule else "list price"
        if cost_break:
            label = f"{label}, wholesale cost from {quantity}"
        tier = _tier_value(tiers, quantity, "unit_price")
        if tier is not None and tier < price:
            price, label = tier, f"wholesale from {quantity}"
        clamped = price < cost
        return Quote(
            unit_price=max(price, cost), cost=cost, rule_id=rule.pk if rule else None, rule_label=label, clamped=clamped
        )


TIER_LIST = "tier_list"


def tiers_prefetch() -> Prefetch:
    """A variant queryset's ``prefetch_related`` of the quantity breaks, as a plain list that
    ``variant_tiers`` reads. A related manager's own prefetch builds a queryset for every variant,
    which on a page of thousands of variants costs several times the query itself."""
    return Prefetch("tiers", queryset=WholesaleTier.objects.order_by("min_quantity"), to_attr=TIER_LIST)


def variant_tiers(variant: Variant) -> list[WholesaleTier]:
    """The variant's quantity breaks by ``min_quantity``: the prefetched list, else a query."""
    tiers = getattr(variant, TIER_LIST, None)
    return tiers if tiers is not None else list(variant.tiers.all())  # ordered by min_quantity (Meta)


def _tier_value(tiers: Iterable, quantity: int, field: str) -> Decimal | None:
    """The lowest ``unit_price`` or ``unit_cost`` of the tiers ``quantity`` reaches (None: no break)."""
    eligible = [getattr(t, field) for t in tiers if t.min_quantity <= quantity and getattr(t, field) is not None]
    return money(min(eligible)) if eligible else None
