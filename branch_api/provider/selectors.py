"""Read models of the branch API: catalog pages, the change feed, orders and statements."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.db.models import Max
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from branch_api.provider import errors
from branch_api.provider.models import BranchPurchase, BranchTerms
from branch_api.provider.services import balance_account_code, branch_price_book, visible_categories, visible_products
from cardvault.models import CardAssignment, CardReveal
from cardvault.services import cards_reveal, variant_stock
from catalog.models import Product, Variant
from catalog.pricing import PriceBook, tiers_prefetch, variant_tiers
from catalog.selectors import variant_units
from ledger.models import Entry
from tenants.models import Branch

# A change committed by a slow transaction can carry an `updated` stamp older than the moment we
# answered; handing out cursors this far in the past re-sends such rows instead of losing them.
CURSOR_OVERLAP = timedelta(seconds=60)


def categories_payload(terms: BranchTerms) -> list[dict]:
    return [
        {
            "id": c.pk,
            "parent_id": c.parent_id,
            "name": c.name,
            "slug": c.slug,
            "icon": c.icon,
            "sort_order": c.sort_order,
        }
        for c in visible_categories(terms)
    ]


def _products_payload(terms: BranchTerms, products) -> list[dict]:
    products = list(products.select_related("category"))
    # The variants in one query, grouped here: a related manager (even Django's prefetch, which makes
    # one per product) costs more than the rows, and a full sync walks tens of thousands of variants.
    variant_lists: dict[int, list[Variant]] = {product.pk: [] for product in products}
    rows = Variant.objects.filter(product_id__in=list(variant_lists)).prefetch_related(tiers_prefetch())
    for variant in rows.order_by("product_id", "sort_order", "pk"):
        variant_lists[variant.product_id].append(variant)
    book = branch_price_book(terms)
    stock = variant_stock([v.pk for variants in variant_lists.values() for v in variants])
    payload = []
    for product in products:
        variants = []
        for variant in variant_lists[product.pk]:
            variant.product = product
            quote = book.quote(variant, category_path=product.category.path)
            units = variant_units(product, variant, stock)
            variants.append(
                {
                    "id": variant.pk,
                    "sku": variant.sku,
                    "name": variant.name,
                    "cost": str(quote.unit_price),
                    "tiers": _tiers_payload(book, variant, product.category.path, quote.unit_price),
                    "stock": units,
                    "is_active": variant.is_active,
                }
            )
        payload.append(
            {
                "id": product.pk,
                "slug": product.slug,
                "name": product.name,
                "description": product.description,
                "category_id": product.category_id,
                "delivery_mode": product.delivery_mode,
                "min_quantity": product.min_quantity,
                "max_quantity": product.max_quantity,
                "updated_at": product.updated.isoformat(),
                "variants": variants,
            }
        )
    return payload


def _tiers_payload(book: PriceBook, variant: Variant, category_path: str, cost: Decimal) -> list[dict]:
    """The branch's quantity breaks: its cost from each of Site A's tiers on, where that is lower than
    for fewer units. A purchase of that quantity is charged exactly this (the same quote)."""
    tiers = []
    for tier in variant_tiers(variant):
        tier_cost = book.quote(variant, quantity=tier.min_quantity, category_path=category_path).unit_price
        if tier_cost < cost:
            tiers.append({"min_quantity": tier.min_quantity, "cost": str(tier_cost)})
            cost = tier_cost
    return tiers


def products_page(terms: BranchTerms, *, page: int, page_size: int) -> dict:
    products = visible_products(terms).order_by("pk")
    count = products.count()
    start = (page - 1) * page_size
    rows = _products_payload(terms, products[start : start + page_size])
    return {"results": rows, "count": count, "next_page": page + 1 if start + page_size < count else None}


def changes_since(terms: BranchTerms, since: str) -> dict:
    """Products whose data, price or stock may have changed since ``since`` (a cursor from an earlier
    answer), and products that are no longer for sale. Stock is sent for every visible variant in
    the changed set; a change of terms or prices answers with ``full: true`` and every product."""
    now = timezone.now()
    cursor = (now - CURSOR_OVERLAP).isoformat()
    try:
        moment = parse_datetime(since) if since else None
    except ValueError:  # well-formed but impossible, e.g. month 13
        moment = None
    if since and moment is None:
        raise errors.Invalid("since must be a cursor returned by this endpoint.", field="since")
    if moment is not None and timezone.is_naive(moment):  # a hand-written date: read as UTC
        moment = timezone.make_aware(moment, UTC)
    visible = visible_products(terms)
    price_change = terms.price_list.rules.aggregate(latest=Max("updated"))["latest"] if terms.price_list_id else None
    full = moment is None or terms.updated > moment or (price_change is not None and price_change > moment)
    if full:
        return {
            "cursor": cursor,
            "full": True,
            "products": _products_payload(terms, visible.order_by("pk")),
            "removed_product_ids": [],
        }
    changed_variants = Variant.objects.filter(updated__gt=moment).values("product_id")
    changed_stock = _stock_changed_products(moment)
    changed = (
        visible.filter(pk__in=changed_variants)
        | visible.filter(updated__gt=moment)
        | visible.filter(pk__in=changed_stock)
    )
    removed = (
        Product.objects.filter(updated__gt=moment).exclude(pk__in=visible.values("pk")).values_list("pk", flat=True)
    )
    return {
        "cursor": cursor,
        "full": False,
        "products": _products_payload(terms, changed.distinct().order_by("pk")),
        "removed_product_ids": list(removed),
    }


def _stock_changed_products(moment: datetime):
    from cardvault.models import Card

    return Card.objects.filter(status_changed_at__gt=moment).values("variant__product_id")


def purchase_get(branch: Branch, reference: str) -> BranchPurchase:
    purchase = BranchPurchase.objects.select_related("order").filter(branch=branch, reference=reference).first()
    if purchase is None:
        raise errors.NotFound("No order with this reference.")
    return purchase


def order_payload(purchase: BranchPurchase, *, with_codes: bool, request=None, reveal_log: list | None = None) -> dict:
    """The order as the API answers it; ``with_codes`` reveals its codes (logged, or added to
    ``reveal_log`` for the caller to write in its transaction)."""
    order = purchase.order
    sale = getattr(purchase, "sale", None)  # a purchase just made brings its lines and codes along
    lines = sale.lines if sale else list(order.lines.order_by("pk"))
    codes: dict[int, list[dict]] = {}
    if with_codes:
        assignments = (
            sale.assignments
            if sale
            else list(
                CardAssignment.objects.filter(order_line__order=order)
                .select_related("card")
                .order_by("order_line_id", "pk")
            )
        )
        revealed = cards_reveal(
            cards=[a.card for a in assignments],
            channel=CardReveal.Channel.API,
            order_number=order.number,
            ip=request.META.get("REMOTE_ADDR") if request else None,
            user_agent=request.META.get("HTTP_USER_AGENT", "") if request else "",
            log_into=reveal_log,
        )
        for assignment, code in zip(assignments, revealed, strict=True):
            codes.setdefault(assignment.order_line_id, []).append(
                # A reusable code is one use of a code others hold too: the branch stores it as such.
                {"code": code.code, "secret": code.secret, "reusable": assignment.reusable}
            )
    return {
        "number": order.number,
        "reference": purchase.reference,
        "status": order.status,
        "currency": order.currency,
        "total": str(order.total),
        "created": order.created.isoformat(),
        "items": [
            {
                "variant_id": line.variant_id,
                "sku": line.sku,
                "quantity": line.quantity,
                "unit_cost": str(line.unit_price),
                **({"codes": codes.get(line.pk, [])} if with_codes else {}),
            }
            for line in lines
        ],
    }


def orders_page(branch: Branch, *, page: int, page_size: int = 50) -> dict:
    purchases = BranchPurchase.objects.filter(branch=branch).select_related("order").order_by("-created")
    start = (page - 1) * page_size
    rows = list(purchases[start : start + page_size + 1])
    return {
        "results": [order_payload(p, with_codes=False) for p in rows[:page_size]],
        "next_page": page + 1 if len(rows) > page_size else None,
    }


def date_or_none(value: str | None) -> date | None:
    """A YYYY-MM-DD date, or None for anything else: parse_date raises on a well-formed impossible date
    (2026-13-01) instead of returning None."""
    try:
        return parse_date(value) if value else None
    except ValueError:
        return None


def statement(branch: Branch, since: str | None, until: str | None) -> list[dict]:
    """Movements of the branch balance, oldest first, with the balance after each (natural side)."""
    entries = Entry.objects.filter(account__code=balance_account_code(branch.pk)).select_related("transaction")
    opening = 0
    start, end = date_or_none(since), date_or_none(until)
    if (since and start is None) or (until and end is None):
        raise errors.Invalid("since and until are dates (YYYY-MM-DD).")
    if start:
        from django.db.models import Sum

        opening = -(entries.filter(created__date__lt=start).aggregate(t=Sum("amount"))["t"] or 0)
        entries = entries.filter(created__date__gte=start)
    if end:
        entries = entries.filter(created__date__lte=end)
    balance, rows = opening, []
    for entry in entries.order_by("created", "pk"):
        balance -= entry.amount
        rows.append(
            {
                "created": entry.created.isoformat(),
                "kind": entry.transaction.kind,
                "reference": entry.transaction.reference,
                "amount": str(-entry.amount),
                "balance_after": str(balance),
            }
        )
    return rows
