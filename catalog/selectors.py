"""Catalog reads for the storefront: constant query counts whatever the catalog size."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector
from django.core.paginator import Page, Paginator
from django.db.models import Prefetch, Q

from cardvault.services import variant_stock
from catalog.models import Category, Product, Variant
from catalog.pricing import PriceBook, Quote, tiers_prefetch


@dataclass
class VariantView:
    variant: Variant
    quote: Quote
    stock: int | None  # None = unlimited

    @property
    def in_stock(self) -> bool:
        return self.stock is None or self.stock > 0


@dataclass
class ProductCard:
    product: Product
    variants: list[VariantView]

    @property
    def from_price(self) -> Decimal | None:
        prices = [v.quote.unit_price for v in self.variants]
        return min(prices) if prices else None

    @property
    def in_stock(self) -> bool:
        return any(v.in_stock for v in self.variants)


def variant_units(product: Product, variant: Variant, vault_stock: dict[int, int | None]) -> int | None:
    """Units for sale (None = unlimited): vault codes, the staff-set stock of manual goods, or Site A's
    stock as of the last sync for a branch's upstream goods."""
    if product.is_manual:
        return variant.manual_stock
    if product.is_upstream:
        return variant.upstream_stock
    return vault_stock.get(variant.pk, 0)


def category_tree() -> list[Category]:
    """Active categories in tree order (one query); an inactive parent hides its subtree."""
    nodes = list(Category.objects.filter(is_active=True).order_by("path"))
    active_paths = {c.path for c in nodes}
    visible = []
    for node in nodes:
        parts = node.path.strip("/").split("/")
        ancestors = {"/" + "/".join(parts[:i]) + "/" for i in range(1, len(parts))}
        if ancestors <= active_paths:
            visible.append(node)
    visible.sort(key=lambda c: (c.path.count("/"), c.sort_order, c.name))
    return _ordered(visible)


def _ordered(nodes: list[Category]) -> list[Category]:
    children: dict[int | None, list[Category]] = {}
    for node in nodes:
        children.setdefault(node.parent_id, []).append(node)
    result: list[Category] = []

    def walk(parent_id):
        for child in sorted(children.get(parent_id, []), key=lambda c: (c.sort_order, c.name)):
            result.append(child)
            walk(child.pk)

    roots = {n.parent_id for n in nodes} - {n.pk for n in nodes}
    for root in sorted(roots, key=lambda r: (r is not None, r or 0)):
        walk(root)
    return result


def _active_products():
    return Product.objects.filter(is_active=True, category__is_active=True).select_related("category", "brand")


def product_cards(products, *, book: PriceBook | None = None, with_specs: bool = False) -> list[ProductCard]:
    """Products with their active variants, prices and stock: a fixed number of queries for any
    number of products (``with_specs`` adds the spec values a product page's picker needs)."""
    book = book or PriceBook.default()
    variants = Variant.objects.filter(is_active=True).prefetch_related(tiers_prefetch()).order_by("sort_order", "pk")
    if with_specs:
        variants = variants.prefetch_related("spec_values")
        products = products.prefetch_related("specs__values")
    products = list(products.prefetch_related(Prefetch("variants", queryset=variants), "images"))
    variant_ids = [
        v.pk for p in products for v in p.variants.all() if p.delivery_mode == Product.DeliveryMode.AUTOMATIC
    ]
    stock = variant_stock(variant_ids)
    cards = []
    for product in products:
        views = []
        for variant in product.variants.all():
            variant.product = product
            quote = book.quote(variant, category_path=product.category.path)
            units = variant_units(product, variant, stock)
            views.append(VariantView(variant=variant, quote=quote, stock=units))
        cards.append(ProductCard(product=product, variants=views))
    return cards


CATEGORY_PAGE_SIZE = 48


def category_products(category: Category, *, page=1, per_page: int | None = None) -> tuple[list[ProductCard], Page]:
    """One page of the products in ``category``'s subtree; a missing, malformed or too large page number
    gives the first or last page rather than an error."""
    paginator = Paginator(
        _active_products().filter(category__path__startswith=category.path).order_by("sort_order", "name", "pk"),
        per_page or CATEGORY_PAGE_SIZE,
    )
    current = paginator.get_page(page)
    return product_cards(current.object_list), current


def featured_products(limit: int = 12) -> list[ProductCard]:
    return product_cards(_active_products().order_by("sort_order", "-created")[:limit])


def product_detail(slug: str) -> ProductCard | None:
    cards = product_cards(_active_products().filter(slug=slug), with_specs=True)
    return cards[0] if cards else None


def _prefix_tsquery(query: str) -> str:
    """User words -> a safe prefix tsquery (``gift:* & car:*``); punctuation never reaches the parser."""
    terms = [re.sub(r"[^\w]", "", word) for word in query.split()]
    return " & ".join(f"{term}:*" for term in terms if term)


def product_search(query: str, limit: int = 10) -> list[Product]:
    """Live search over product and category names.

    Word-prefix full-text matching uses the GIN indexes on ``to_tsvector('simple', name)``; substring
    matching (needed for scripts written without spaces, such as Chinese) fills up the rest.
    """
    query = " ".join(query.split())[:80]
    if len(query) < 2:
        return []
    found: list[Product] = []
    tsquery = _prefix_tsquery(query)
    if tsquery:
        search = SearchQuery(tsquery, search_type="raw", config="simple")
        found = list(
            _active_products()
            .annotate(
                name_vector=SearchVector("name", config="simple"),
                category_vector=SearchVector("category__name", config="simple"),
            )
            .filter(Q(name_vector=search) | Q(category_vector=search))
            .annotate(rank=SearchRank(SearchVector("name", config="simple"), search))
            .order_by("-rank", "name")[:limit]
        )
    if len(found) < limit:
        seen = [p.pk for p in found]
        found += list(
            _active_products()
            .filter(Q(name__icontains=query) | Q(category__name__icontains=query))
            .exclude(pk__in=seen)
            .order_by("name")[: limit - len(found)]
        )
    return found
