"""Catalog sync: local copies of the Site A products the branch selected.

A copy is a normal catalog Product (``delivery_mode=upstream``, ``upstream_id`` = Site A's id) with
Variants holding Site A's cost (``cost``, and ``price`` = cost so the branch's price list prices it)
and stock as of the sync (``upstream_stock``). The storefront reads only these copies, never Site A.
Copies are never deleted: deselected or withdrawn products become inactive.

Each page of products costs a constant number of queries (bulk reads and writes), whatever its size.
"""

from __future__ import annotations

import secrets
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection as db_connection
from django.db import connections as db_connections
from django.db import transaction
from django.db.models import Model
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from branch_api.upstream.client import UpstreamClient
from branch_api.upstream.errors import UpstreamError, UpstreamRefused
from branch_api.upstream.models import UpstreamCategory, UpstreamConnection, UpstreamSelection
from branch_api.upstream.selectors import connection_get
from catalog.models import Category, Product, Variant, WholesaleTier
from catalog.pricing import money
from core.sql import copy_insert

PAGE_SIZE = 500
# Site A's own cursors overlap by a minute so a slow transaction's changes are not skipped; a cursor
# taken from the clock before a full sync keeps the same margin.
CURSOR_OVERLAP = timedelta(seconds=60)
# Only goods Site A delivers at once can be resold: a code bought for a customer must come back in
# the purchase's answer.
SELLABLE_MODES = {Product.DeliveryMode.AUTOMATIC}
# The change feed is a delta: a full read now and then bounds any drift (a lost cursor, a product
# that slid between pages during a full read).
FULL_SYNC_EVERY = timedelta(hours=24)
FALLBACK_CATEGORY_SLUG = "from-site-a"

PRODUCT_FIELDS = ["name", "description", "category_id", "delivery_mode", "min_quantity", "max_quantity", "is_active"]
VARIANT_FIELDS = ["product_id", "name", "price", "cost", "is_active", "upstream_stock", "sort_order"]


@dataclass
class SyncResult:
    full: bool
    skipped: bool = False  # another sync of this shop was running
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deactivated: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        if self.skipped:
            return "skipped: another sync was running"
        kind = "full" if self.full else "incremental"
        return (
            f"{kind}: {self.created} new, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.deactivated} deactivated in {self.seconds:.1f}s"
        )


def sync_full() -> SyncResult:
    """Read Site A's whole visible catalog (categories, then products page by page) and bring the
    copies of the selected products up to date; products no longer selected or visible become inactive.
    """
    connection = connection_get()
    started, clock = timezone.now(), time.perf_counter()
    result = SyncResult(full=True)
    with _sync_lock() as acquired:
        if not acquired:
            return SyncResult(full=True, skipped=True)
        client = UpstreamClient(connection)
        try:
            # The moment before the first page, on Site A's clock: the next incremental pull starts there.
            server_time = parse_datetime(client.ping()["server_time"])
            plan = _Plan(_categories_store(client.categories()))
            seen: set[int] = set()
            counts: set[int] = set()
            # Site A builds the next page while this one is written: its half of the work overlaps ours.
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync-fetch") as fetcher:
                pending = fetcher.submit(_products_page, client, 1)
                while pending is not None:
                    answer = pending.result()
                    page = answer.get("next_page")
                    pending = fetcher.submit(_products_page, client, page) if page else None
                    seen |= _products_apply(answer["results"], plan, result)
                    counts.add(answer.get("count"))
        except UpstreamError as exc:
            _sync_failed(connection, exc)
            raise
        if len(counts) == 1:
            result.deactivated += _copies_deactivate_except(seen)
        else:
            # Site A's listing moved while we paged through it: a product may have slid between two
            # pages unseen. Deactivate nothing on this evidence; the next sync reads everything again.
            UpstreamConnection.objects.filter(pk=connection.pk).update(full_sync_requested_at=timezone.now())
            started = None
        _mirrors_show_or_hide()
    cursor = (server_time - CURSOR_OVERLAP).isoformat() if server_time else ""
    return _sync_done(connection, result, cursor=cursor, clock=clock, full_started=started)


def _products_page(client: UpstreamClient, page: int) -> dict:
    try:
        return client.products(page=page, page_size=PAGE_SIZE)
    finally:
        # A Site A in the same process served it on this thread, with a database connection of its own.
        db_connections.close_all()


def sync_incremental() -> SyncResult:
    """Apply Site A's change feed since the stored cursor. Falls back to a full sync when there is no
    cursor yet, the selection changed, the last full sync is a day old, or Site A answers that
    everything must be re-read."""
    connection = connection_get()
    stale = connection.last_full_sync_at is None or connection.last_full_sync_at < timezone.now() - FULL_SYNC_EVERY
    if not connection.sync_cursor or connection.full_sync_requested_at or stale:
        return sync_full()
    started, clock = timezone.now(), time.perf_counter()
    with _sync_lock() as acquired:
        if not acquired:
            return SyncResult(full=False, skipped=True)
        client = UpstreamClient(connection)
        try:
            answer = client.changes(since=connection.sync_cursor)
            full = bool(answer.get("full"))
            plan = _Plan(_categories_stored())
            if full or plan.unknown_categories(answer["products"]):
                plan = _Plan(_categories_store(client.categories()))
        except UpstreamRefused as exc:
            if exc.code != "invalid":
                _sync_failed(connection, exc)
                raise
            answer = None  # Site A no longer understands our cursor
        except UpstreamError as exc:
            _sync_failed(connection, exc)
            raise
        if answer is not None:
            result = SyncResult(full=full)
            products = answer["products"]
            seen: set[int] = set()
            for start in range(0, len(products), PAGE_SIZE):
                seen |= _products_apply(products[start : start + PAGE_SIZE], plan, result, deactivate_unselected=True)
            if full:
                result.deactivated += _copies_deactivate_except(seen)
            result.deactivated += _copies_deactivate(answer.get("removed_product_ids") or [])
            _mirrors_show_or_hide()
            return _sync_done(
                connection, result, cursor=answer["cursor"], clock=clock, full_started=started if full else None
            )
    UpstreamConnection.objects.filter(pk=connection.pk).update(sync_cursor="")
    return sync_full()


# --- Bookkeeping ----------------------------------------------------------------------------------


@contextmanager
def _sync_lock() -> Iterator[bool]:
    """One sync per shop at a time (periodic, admin button and fulfilment may overlap): a session
    advisory lock keyed by the schema, released even when the sync fails."""
    key = zlib.crc32(f"branch-upstream-sync:{db_connection.schema_name}".encode())
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [7301, key - 2**31])
        acquired = cursor.fetchone()[0]
    try:
        yield acquired
    finally:
        if acquired:
            with db_connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [7301, key - 2**31])


def _sync_failed(connection: UpstreamConnection, exc: UpstreamError) -> None:
    UpstreamConnection.objects.filter(pk=connection.pk).update(
        status=UpstreamConnection.Status.ERROR,
        last_error=f"sync: {exc.code}: {exc.message}"[:255],
        last_error_at=timezone.now(),
    )


def _sync_done(
    connection: UpstreamConnection,
    result: SyncResult,
    *,
    cursor: str,
    clock: float,
    full_started: datetime | None = None,
) -> SyncResult:
    result.seconds = time.perf_counter() - clock
    now = timezone.now()
    fields = {
        "status": UpstreamConnection.Status.OK,
        "last_sync_at": now,
        "last_sync_result": result.summary()[:255],
        "sync_cursor": cursor[:64],
    }
    if result.full:
        fields["last_full_sync_at"] = now
    UpstreamConnection.objects.filter(pk=connection.pk).update(**fields)
    if full_started is not None:
        # A selection changed while this sync ran keeps its request for the next one.
        UpstreamConnection.objects.filter(pk=connection.pk, full_sync_requested_at__lte=full_started).update(
            full_sync_requested_at=None
        )
    return result


# --- Categories -----------------------------------------------------------------------------------


def _categories_store(remote: list[dict]) -> dict[int, UpstreamCategory]:
    """Remember Site A's category tree (one bulk write); mirrored local categories follow renames."""
    by_id = {int(c["id"]): c for c in remote}
    paths: dict[int, str] = {}

    def path_of(remote_id: int, depth: int = 0) -> str:
        if remote_id not in paths:
            parent = by_id[remote_id].get("parent_id")
            prefix = path_of(int(parent), depth + 1) if parent and int(parent) in by_id and depth < 50 else "/"
            paths[remote_id] = f"{prefix}{remote_id}/"
        return paths[remote_id]

    stored = {c.remote_id: c for c in UpstreamCategory.objects.select_related("local_category")}
    new, changed, renamed = [], [], []
    for remote_id, data in by_id.items():
        values = {
            "parent_remote_id": int(data["parent_id"]) if data.get("parent_id") else None,
            "name": str(data.get("name") or "")[:120],
            "slug": str(data.get("slug") or "")[:140],
            "icon": str(data.get("icon") or "")[:16],
            "sort_order": max(int(data.get("sort_order") or 0), 0),
            "path": path_of(remote_id)[:255],
            "is_visible": True,
        }
        row = stored.get(remote_id)
        if row is None:
            new.append(UpstreamCategory(remote_id=remote_id, **values))
        elif _assign(row, values):
            changed.append(row)
        if row is not None and row.local_category is not None:
            local = row.local_category
            if (local.name, local.icon, local.sort_order) != (values["name"], values["icon"], values["sort_order"]):
                renamed.append(row)
    with transaction.atomic():
        UpstreamCategory.objects.bulk_create(new)
        UpstreamCategory.objects.bulk_update(
            changed, ["parent_remote_id", "name", "slug", "icon", "sort_order", "path", "is_visible"]
        )
        UpstreamCategory.objects.exclude(remote_id__in=list(by_id)).update(is_visible=False)
        for row in renamed:  # rare, and a category's save() maintains its tree path
            Category.objects.filter(pk=row.local_category_id).update(
                name=row.name, icon=row.icon, sort_order=row.sort_order
            )
    return _categories_stored()


def _categories_stored() -> dict[int, UpstreamCategory]:
    return {c.remote_id: c for c in UpstreamCategory.objects.filter(is_visible=True)}


@dataclass
class _Plan:
    """Which remote products are selected, and the local category each copy goes in."""

    categories: dict[int, UpstreamCategory]
    products: dict[int, int | None] = field(default_factory=dict)  # remote id -> local category override
    subtrees: list[tuple[str, int | None]] = field(default_factory=list)  # (remote path, override), deepest first
    mirrors: dict[int, int] = field(default_factory=dict)  # remote category id -> local category id
    excluded: set[int] = field(default_factory=set)  # remote product ids the shop does not sell

    def __post_init__(self):
        for selection in UpstreamSelection.objects.all():
            if selection.kind == UpstreamSelection.Kind.EXCLUDED:
                self.excluded.add(selection.remote_id)
            elif selection.kind == UpstreamSelection.Kind.PRODUCT:
                self.products[selection.remote_id] = selection.local_category_id
            elif selection.remote_id in self.categories:
                self.subtrees.append((self.categories[selection.remote_id].path, selection.local_category_id))
        self.subtrees.sort(key=lambda item: -len(item[0]))

    def unknown_categories(self, products: list[dict]) -> bool:
        return any(p.get("category_id") and int(p["category_id"]) not in self.categories for p in products)

    def placement(self, product: dict) -> tuple[bool, int | None]:
        """(selected, local category override or None to mirror Site A's tree)."""
        if product.get("delivery_mode", Product.DeliveryMode.AUTOMATIC) not in SELLABLE_MODES:
            return False, None
        if int(product["id"]) in self.excluded:
            return False, None
        if int(product["id"]) in self.products:  # a product chosen by itself wins over its category
            return True, self.products[int(product["id"])]
        category = self.categories.get(int(product.get("category_id") or 0))
        for path, override in self.subtrees:
            if category is not None and category.path.startswith(path):
                return True, override
        return False, None

    def local_category(self, remote_category_id: int | None) -> int:
        """The local mirror of a remote category, created (with its ancestors) on first use."""
        category = self.categories.get(int(remote_category_id or 0))
        if category is None:
            return _fallback_category()
        if category.remote_id in self.mirrors:
            return self.mirrors[category.remote_id]
        parent_local = None
        for part in category.path.strip("/").split("/"):
            node = self.categories.get(int(part))
            if node is None:
                continue
            if node.remote_id not in self.mirrors:
                if node.local_category_id is None:
                    local = Category(
                        parent_id=parent_local,
                        name=node.name or node.slug,
                        slug=_unique_category_slug(node.slug or f"site-a-{node.remote_id}", node.remote_id),
                        icon=node.icon,
                        sort_order=node.sort_order,
                    )
                    local.save()  # one at a time: save() derives the tree path
                    node.local_category_id = local.pk
                    UpstreamCategory.objects.filter(pk=node.pk).update(local_category=local, hidden_by_sync=False)
                self.mirrors[node.remote_id] = node.local_category_id
            parent_local = self.mirrors[node.remote_id]
        return self.mirrors[category.remote_id]


def _unique_category_slug(slug: str, remote_id: int) -> str:
    for candidate in (slug[:140], f"{slug[:120]}-{remote_id}", f"{slug[:110]}-{remote_id}-{secrets.token_hex(3)}"):
        if not Category.objects.filter(slug=candidate).exists():
            return candidate
    return f"site-a-{remote_id}-{secrets.token_hex(4)}"


def _fallback_category() -> int:
    """Where a product of an unknown remote category goes (Site A sent a product without its category)."""
    category = Category.objects.filter(slug=FALLBACK_CATEGORY_SLUG).first()
    if category is None:
        category = Category(name="Site A", slug=FALLBACK_CATEGORY_SLUG)
        category.save()
    return category.pk


def _mirrors_show_or_hide() -> None:
    """Hide mirrored categories left without active products; show again those the sync hid."""
    mirrors = list(UpstreamCategory.objects.filter(local_category__isnull=False).select_related("local_category"))
    if not mirrors:
        return
    paths = Product.objects.filter(is_active=True).values_list("category__path", flat=True).distinct()
    live = {int(part) for path in paths for part in path.strip("/").split("/") if part}
    hide = [m for m in mirrors if m.local_category.is_active and m.local_category_id not in live]
    show = [m for m in mirrors if m.hidden_by_sync and m.local_category_id in live]
    with transaction.atomic():
        if hide:
            Category.objects.filter(pk__in=[m.local_category_id for m in hide]).update(is_active=False)
            UpstreamCategory.objects.filter(pk__in=[m.pk for m in hide]).update(hidden_by_sync=True)
        if show:
            Category.objects.filter(pk__in=[m.local_category_id for m in show]).update(is_active=True)
            UpstreamCategory.objects.filter(pk__in=[m.pk for m in show]).update(hidden_by_sync=False)


# --- Products -------------------------------------------------------------------------------------


def _products_apply(
    products: list[dict], plan: _Plan, result: SyncResult, *, deactivate_unselected: bool = False
) -> set[int]:
    """Upsert the copies of the selected products of one page; returns their remote ids."""
    now = timezone.now()
    placed: list[tuple[dict, int]] = []
    unselected: list[int] = []
    for product in products:
        selected, override = plan.placement(product)
        if selected:
            placed.append((product, override or plan.local_category(product.get("category_id"))))
        else:
            unselected.append(int(product["id"]))
    with transaction.atomic():
        if deactivate_unselected and unselected:
            result.deactivated += _copies_deactivate(unselected)
        if placed:
            copies, created, changed = _product_copies_upsert(placed, now)
            changed = (changed | _variant_copies_upsert(placed, copies, now, new_products=created)) - created
            result.created += len(created)
            result.updated += len(changed)
            result.unchanged += len(copies) - len(created) - len(changed)
    return {int(p["id"]) for p, _ in placed}


def _product_copies_upsert(
    placed: list[tuple[dict, int]], now: datetime
) -> tuple[dict[int, Product], set[int], set[int]]:
    """Create or update the product copies; returns them by remote id, and the remote ids created and
    changed."""
    existing = {p.upstream_id: p for p in Product.objects.filter(upstream_id__in=[int(p["id"]) for p, _ in placed])}
    new_slugs = _unique_values(
        Product,
        "slug",
        {int(p["id"]): str(p.get("slug") or f"site-a-{p['id']}") for p, _ in placed if int(p["id"]) not in existing},
        max_length=220,
        alternative=lambda remote_id, slug: f"{slug[:200]}-{remote_id}",
    )
    created, changed = [], []
    for data, category_id in placed:
        remote_id = int(data["id"])
        values = {
            "name": str(data.get("name") or "")[:200],
            "description": str(data.get("description") or ""),
            "category_id": category_id,
            "delivery_mode": Product.DeliveryMode.UPSTREAM,
            "min_quantity": max(int(data.get("min_quantity") or 1), 1),
            "max_quantity": max(int(data.get("max_quantity") or 1), int(data.get("min_quantity") or 1), 1),
            "is_active": True,
        }
        copy = existing.get(remote_id)
        if copy is None:
            created.append(Product(upstream_id=remote_id, slug=new_slugs[remote_id], **values))
        elif _assign(copy, values):
            copy.updated = now
            changed.append(copy)
    copy_insert(created)
    Product.objects.bulk_update(changed, [*PRODUCT_FIELDS, "updated"])
    copies = {**existing, **{p.upstream_id: p for p in created}}
    return copies, {p.upstream_id for p in created}, {p.upstream_id for p in changed}


def _variant_copies_upsert(
    placed: list[tuple[dict, int]], copies: dict[int, Product], now: datetime, *, new_products: set[int] = frozenset()
) -> set[int]:
    """Create or update the variant copies; returns the remote ids of the products whose variants changed.
    ``new_products``: remote ids of product copies just created (nothing of theirs to read or retire)."""
    remote: dict[int, tuple[dict, Product, int]] = {}
    for data, _ in placed:
        for position, variant in enumerate(data.get("variants") or []):
            remote[int(variant["id"])] = (variant, copies[int(data["id"])], position)
    existing = {v.upstream_id: v for v in Variant.objects.filter(upstream_id__in=list(remote))}
    new_skus = _unique_values(
        Variant,
        "sku",
        {
            remote_id: str(v.get("sku") or f"SA-{remote_id}")
            for remote_id, (v, _, _) in remote.items()
            if remote_id not in existing
        },
        max_length=64,
        alternative=lambda remote_id, sku: f"SA{remote_id}-{sku}"[:64],
    )
    created, changed = [], []
    touched: set[int] = set()
    for remote_id, (data, product, position) in remote.items():
        cost = money(Decimal(str(data.get("cost") or "0")))
        stock = data.get("stock")
        values = {
            "product_id": product.pk,
            "name": str(data.get("name") or "")[:120],
            "price": cost,  # the branch's price list turns cost into the customer price
            "cost": cost,
            "is_active": bool(data.get("is_active", True)),
            "upstream_stock": None if stock is None else max(int(stock), 0),
            "sort_order": position,
        }
        variant = existing.get(remote_id)
        if variant is None:
            created.append(Variant(upstream_id=remote_id, sku=new_skus[remote_id], **values))
            touched.add(product.upstream_id)
        elif _assign(variant, values):
            variant.updated = now
            changed.append(variant)
            touched.add(product.upstream_id)
    copy_insert(created)
    Variant.objects.bulk_update(changed, [*VARIANT_FIELDS, "updated"])
    copies_by_remote = {**existing, **{v.upstream_id: v for v in created}}
    retiered = _tier_copies_upsert(
        {remote_id: data for remote_id, (data, _, _) in remote.items()},
        copies_by_remote,
        new={v.pk for v in created},
    )
    for remote_id in retiered:
        touched.add(remote[remote_id][1].upstream_id)
    if retiered:
        Variant.objects.filter(upstream_id__in=list(retiered)).update(updated=now)
    # Variants Site A no longer lists for these products stop selling (a product copied just now has none).
    older = [p.pk for remote_id, p in copies.items() if remote_id not in new_products]
    dropped = (
        Variant.objects.filter(product_id__in=older, upstream_id__isnull=False, is_active=True)
        .exclude(upstream_id__in=list(remote))
        .update(is_active=False, updated=now)
        if older
        else 0
    )
    if dropped:
        touched |= set(copies)  # which ones is not worth a query: they are counted as updated
    return touched


def _remote_tiers(data: dict, cost: Decimal) -> dict[int, Decimal]:
    """Site A's quantity breaks of one variant, at the branch's cost: {from quantity: unit cost}.
    Only real breaks are kept (from 2 units on, cheaper than for fewer units)."""
    tiers: dict[int, Decimal] = {}
    for tier in sorted(data.get("tiers") or [], key=lambda t: int(t.get("min_quantity") or 0)):
        min_quantity, tier_cost = int(tier.get("min_quantity") or 0), money(Decimal(str(tier.get("cost") or "0")))
        if min_quantity >= 2 and Decimal("0") <= tier_cost < cost:
            tiers[min_quantity] = cost = tier_cost
    return tiers


def _tier_copies_upsert(
    remote: dict[int, dict], copies: dict[int, Variant], *, new: set[int] = frozenset()
) -> set[int]:
    """Keep each copy's cost tiers equal to Site A's (``unit_cost``; a tier price the shop set itself,
    ``unit_price``, stays). Returns the remote ids of the variants whose tiers changed. Three queries
    at most per page, whatever its size; ``new``: pks of copies created just now (no tiers to read)."""
    wanted = {
        copies[remote_id].pk: _remote_tiers(data, money(Decimal(str(data.get("cost") or "0"))))
        if data.get("tiers")
        else {}  # most variants have no breaks: spare them the cost arithmetic
        for remote_id, data in remote.items()
    }
    stored: dict[int, dict[int, tuple[int, Decimal | None, Decimal | None]]] = {}
    older = [pk for pk in wanted if pk not in new]
    rows = WholesaleTier.objects.filter(variant_id__in=older).values_list(
        "variant_id", "pk", "min_quantity", "unit_price", "unit_cost"
    )
    rows = rows if older else []
    for variant_id, pk, min_quantity, unit_price, unit_cost in rows:
        stored.setdefault(variant_id, {})[min_quantity] = (pk, unit_price, unit_cost)
    upsert: list[WholesaleTier] = []
    gone: list[int] = []  # copied tiers Site A dropped
    cleared: list[int] = []  # the shop's own tier price stays, Site A's cost break on it goes
    changed: set[int] = set()
    for variant_id, tiers in wanted.items():
        mine = stored.get(variant_id, {})
        for min_quantity, (pk, unit_price, unit_cost) in mine.items():
            if unit_cost is not None and min_quantity not in tiers:
                (gone if unit_price is None else cleared).append(pk)
                changed.add(variant_id)
        for min_quantity, unit_cost in tiers.items():
            row = mine.get(min_quantity)
            if row is None or row[2] != unit_cost:
                upsert.append(
                    WholesaleTier(
                        variant_id=variant_id,
                        min_quantity=min_quantity,
                        unit_cost=unit_cost,
                        unit_price=row[1] if row else None,
                    )
                )
                changed.add(variant_id)
    if gone:
        WholesaleTier.objects.filter(pk__in=gone).delete()
    if cleared:
        WholesaleTier.objects.filter(pk__in=cleared).update(unit_cost=None)
    if upsert:
        WholesaleTier.objects.bulk_create(
            upsert, update_conflicts=True, unique_fields=["variant", "min_quantity"], update_fields=["unit_cost"]
        )
    by_pk = {variant.pk: remote_id for remote_id, variant in copies.items()}
    return {by_pk[variant_id] for variant_id in changed}


def _copies_deactivate(remote_ids: list[int]) -> int:
    if not remote_ids:
        return 0
    return Product.objects.filter(upstream_id__in=[int(i) for i in remote_ids], is_active=True).update(
        is_active=False, updated=timezone.now()
    )


def _copies_deactivate_except(keep: set[int]) -> int:
    active = Product.objects.filter(upstream_id__isnull=False, is_active=True).values_list("pk", "upstream_id")
    gone = [pk for pk, remote_id in active if remote_id not in keep]
    if not gone:
        return 0
    return Product.objects.filter(pk__in=gone).update(is_active=False, updated=timezone.now())


def _unique_values(
    model: type[Model],
    field_name: str,
    wanted: dict[int, str],
    *,
    max_length: int,
    alternative: Callable[[int, str], str],
) -> dict[int, str]:
    """Values for a unique column: the wanted one, or ``alternative`` where it is taken (two queries)."""
    if not wanted:
        return {}
    wanted = {key: value[:max_length] for key, value in wanted.items()}
    taken = set(model.objects.filter(**{f"{field_name}__in": list(wanted.values())}).values_list(field_name, flat=True))
    chosen: dict[int, str] = {}
    used: set[str] = set()
    for key, value in wanted.items():
        if value in taken or value in used:
            value = alternative(key, value)[:max_length]
        chosen[key] = value
        used.add(value)
    replaced = [chosen[key] for key in wanted if chosen[key] != wanted[key]]
    if replaced:
        clash = set(model.objects.filter(**{f"{field_name}__in": replaced}).values_list(field_name, flat=True))
        for key, value in chosen.items():
            if value in clash and value != wanted[key]:
                chosen[key] = f"{value[: max_length - 7]}-{secrets.token_hex(3)}"
    return chosen


def _assign(instance: Model, values: dict) -> bool:
    """Set ``values`` on ``instance``; True if anything changed."""
    changed = False
    for name, value in values.items():
        if getattr(instance, name) != value:
            setattr(instance, name, value)
            changed = True
    return changed
