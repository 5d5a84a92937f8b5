"""The pricing engine: most specific rule wins, rounding, wholesale tiers, never below cost."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django_tenants.utils import schema_context

from catalog.models import Category, PriceList, PriceRule, Product, Variant, WholesaleTier
from catalog.pricing import PriceBook

pytestmark = pytest.mark.django_db
D = Decimal


@pytest.fixture
def tree():
    with schema_context("alpha"):
        root = Category.objects.create(name="Gift cards", slug="gc")
        child = Category.objects.create(name="Steam", slug="steam", parent=root)
        product = Product.objects.create(category=child, name="Steam wallet", slug="steam-wallet")
        variant = Variant.objects.create(product=product, sku="ST-10", name="$10", price=D("12.00"), cost=D("10.00"))
        other = Variant.objects.create(product=product, sku="ST-20", name="$20", price=D("24.00"), cost=D("20.00"))
        price_list = PriceList.objects.create(name="Store", code="store", is_default=True)
        yield {"root": root, "child": child, "product": product, "variant": variant, "other": other, "list": price_list}


def _quote(variant, quantity=1):
    variant = Variant.objects.select_related("product__category").prefetch_related("tiers").get(pk=variant.pk)
    return PriceBook.default().quote(variant, quantity=quantity)


def _rule(price_list, **kwargs):
    return PriceRule.objects.create(price_list=price_list, **kwargs)


def test_without_rules_the_list_price_applies(tree):
    with schema_context("alpha"):
        quote = _quote(tree["variant"])
        assert (quote.unit_price, quote.rule_id, quote.clamped) == (D("12.00"), None, False)


def test_most_specific_rule_wins(tree):
    with schema_context("alpha"):
        pl = tree["list"]
        _rule(pl, scope="all", mode="percent", value=D("50"))
        assert _quote(tree["variant"]).unit_price == D("15.00")
        _rule(pl, scope="category", category=tree["root"], mode="percent", value=D("40"))
        assert _quote(tree["variant"]).unit_price == D("14.00")
        _rule(pl, scope="category", category=tree["child"], mode="percent", value=D("30"))
        assert _quote(tree["variant"]).unit_price == D("13.00")  # deeper category beats its parent
        _rule(pl, scope="product", product=tree["product"], mode="fixed_markup", value=D("2.50"))
        assert _quote(tree["variant"]).unit_price == D("12.50")
        rule = _rule(pl, scope="variant", variant=tree["variant"], mode="fixed_price", value=D("11.11"))
        quote = _quote(tree["variant"])
        assert (quote.unit_price, quote.rule_id) == (D("11.11"), rule.pk)
        assert _quote(tree["other"]).unit_price == D("22.50")  # product rule still prices the sibling


def test_price_is_never_below_cost_and_the_clamp_is_flagged(tree):
    with schema_context("alpha"):
        _rule(tree["list"], scope="variant", variant=tree["variant"], mode="fixed_price", value=D("7.00"))
        quote = _quote(tree["variant"])
        assert quote.unit_price == D("10.00") and quote.clamped
        _rule(tree["list"], scope="product", product=tree["product"], mode="percent", value=D("-30"))
        assert _quote(tree["other"]).unit_price == D("20.00")


@pytest.mark.parametrize(("rounding", "expected"), [("none", D("13.37")), ("99", D("13.99")), ("whole", D("14.00"))])
def test_rounding_modes(tree, rounding, expected):
    with schema_context("alpha"):
        _rule(tree["list"], scope="all", mode="percent", value=D("33.7"), rounding=rounding)
        assert _quote(tree["variant"]).unit_price == expected


def test_half_up_rounding_to_the_cent(tree):
    with schema_context("alpha"):
        _rule(tree["list"], scope="all", mode="percent", value=D("0.05"))  # 10.005 -> 10.01
        assert _quote(tree["variant"]).unit_price == D("10.01")


def test_wholesale_tier_applies_from_its_quantity_but_not_below_cost(tree):
    with schema_context("alpha"):
        WholesaleTier.objects.create(variant=tree["variant"], min_quantity=10, unit_price=D("11.00"))
        WholesaleTier.objects.create(variant=tree["variant"], min_quantity=50, unit_price=D("9.00"))
        assert _quote(tree["variant"], 9).unit_price == D("12.00")
        assert _quote(tree["variant"], 10).unit_price == D("11.00")
        quote = _quote(tree["variant"], 60)
        assert quote.unit_price == D("10.00") and quote.clamped


def test_inactive_rules_and_other_lists_do_not_apply(tree):
    with schema_context("alpha"):
        _rule(tree["list"], scope="all", mode="percent", value=D("90"), is_active=False)
        other_list = PriceList.objects.create(name="Wholesale", code="wholesale")
        _rule(other_list, scope="all", mode="percent", value=D("1"))
        assert _quote(tree["variant"]).unit_price == D("12.00")


def test_rule_target_must_match_its_scope(tree):
    with schema_context("alpha"):
        rule = PriceRule(price_list=tree["list"], scope="product", mode="percent", value=D("5"))
        with pytest.raises(ValidationError):
            rule.full_clean()
        rule = PriceRule(price_list=tree["list"], scope="all", product=tree["product"], mode="percent", value=D("5"))
        with pytest.raises(ValidationError):
            rule.full_clean()


def test_moving_a_category_moves_its_subtree(tree):
    with schema_context("alpha"):
        leaf = Category.objects.create(name="Steam EU", slug="steam-eu", parent=tree["child"])
        other_root = Category.objects.create(name="Games", slug="games")
        child = tree["child"]
        child.parent = other_root
        child.save()
        leaf.refresh_from_db()
        assert leaf.path == f"{other_root.path}{child.pk}/{leaf.pk}/"
        assert leaf.depth == 2


def test_a_category_cannot_be_moved_into_its_own_subtree(tree):
    with schema_context("alpha"):
        root = tree["root"]
        root.parent = tree["child"]
        with pytest.raises(ValidationError):
            root.full_clean()
