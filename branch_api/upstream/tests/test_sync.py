"""Catalog sync: selected Site A products become local copies with Site A's cost and stock, priced by
the branch's markup; changes arrive incrementally; deselected or withdrawn products go inactive."""

from __future__ import annotations

import time
from decimal import Decimal

from django.db import connection
from django.utils import timezone
from django_tenants.utils import schema_context

from branch_api.upstream.models import UpstreamCategory, UpstreamConnection, UpstreamSelection
from branch_api.upstream.services import branch_markup_set, selection_add, selection_remove, sync_full, sync_incremental
from branch_api.upstream.sync import PAGE_SIZE
from cardvault.services import codes_parse_text, import_commit
from catalog.models import Category, Product, Variant
from catalog.pricing import PriceBook
from conftest import host_client

from .conftest import show_everything_to_alpha, site_a_category, site_a_variant

D = Decimal


def _copy(remote_product_id: int) -> Product:
    return Product.objects.select_related("category").get(upstream_id=remote_product_id)


def _price(variant: Variant) -> Decimal:
    variant = Variant.objects.select_related("product__category").get(pk=variant.pk)
    return PriceBook.default().quote(variant).unit_price


def test_full_sync_copies_a_selected_category_with_cost_stock_and_the_branch_price(site_a):
    gaming = site_a_category("Gaming")
    wanted = site_a_variant(price="10.00", codes=3, category=gaming, name="Steam Wallet")
    other = site_a_variant(price="20.00", codes=1)  # visible, not selected
    show_everything_to_alpha()

    with schema_context("alpha"):
        selection_add(kind=UpstreamSelection.Kind.CATEGORY, remote_id=gaming.pk, name="Gaming")
        branch_markup_set(percent=D("50"))
        result = sync_full()

        copy = _copy(wanted.product_id)
        variant = copy.variants.get()
        assert (copy.delivery_mode, copy.is_active, copy.name) == (Product.DeliveryMode.UPSTREAM, True, "Steam Wallet")
        assert (variant.upstream_id, variant.cost, variant.upstream_stock) == (wanted.pk, D("10.00"), 3)
        assert _price(variant) == D("15.00")  # Site A cost 10 + the branch's 50 %
        assert copy.category.name == "Gaming"  # Site A's tree mirrored
        assert UpstreamCategory.objects.get(remote_id=gaming.pk).local_category_id == copy.category_id
        assert not Product.objects.filter(upstream_id=other.product_id).exists()
        connection_row = UpstreamConnection.objects.get()
    assert (result.created, result.deactivated) == (1, 0)
    assert (
        connection_row.sync_cursor
        and connection_row.last_full_sync_at
        and connection_row.full_sync_requested_at is None
    )

    page = host_client("alpha.localhost").get(f"/p/{copy.slug}/")
    assert page.status_code == 200 and "15.00" in page.content.decode()


def test_a_second_sync_changes_nothing(site_a):
    variant = site_a_variant(codes=2)
    show_everything_to_alpha()
    with schema_context("alpha"):
        selection_add(kind=UpstreamSelection.Kind.PRODUCT, remote_id=variant.product_id)
        sync_full()
        before = Variant.objects.get(upstream_id=variant.pk).updated
        again = sync_full()
        assert Variant.objects.get(upstream_id=variant.pk).updated == before
        assert Product.objects.filter(upstream_id=variant.product_id).count() == 1
    assert (again.created, again.updated, again.unchanged, again.deactivated) == (0, 0, 1, 0)


def test_incremental_sync_brings_a_price_and_stock_change(site_a):
    variant = site_a_variant(price="10.00", codes=3)
    show_everything_to_alpha()
    with schema_context("alpha"):
        selection_add(kind=UpstreamSelection.Kind.PRODUCT, remote_id=variant.product_id)
        branch_markup_set(percent=D("50"))
        sync_full()

    with schema_context("public"):
        Variant.objects.filter(pk=variant.pk).update(price=D("12.00"))
        Variant.objects.get(pk=variant.pk).save()  # bump `updated` as an edit in the admin would
        import_commit(variant=variant, parsed=codes_parse_text("NEW-1\nNEW-2"), unit_cost=D("8"), source="paste")

    with schema_context("alpha"):
        result = sync_incremental()
        copy = Variant.objects.get(upstream_id=variant.pk)
    assert not result.full and result.updated >= 1
    assert (copy.cost, copy.upstream_stock) == (D("12.00"), 5)
    with schema_context("alpha"):
        assert _price(copy) == D("18.00")


def test_a_new_product_in_a_selected_category_arrives_with_the_next_incremental_sync(site_a):
    cards = site_a_category("Cards")
    site_a_variant(category=cards)
    show_everything_to_alpha()
    with schema_context("alpha"):
        selection_add(kind=UpstreamSelection.Kind.CATEGORY, remote_id=cards.pk)
        sync_full()
    later = site_a_variant(category=cards, name="Added later")
    with schema_context("alpha"):
        result = sync_incremental()
        assert _copy(later.product_id).name == "Added later"
    assert result.created == 1


def test_a_product_can_be_placed_in_a_category_of_the_branch(site_a):
    variant = site_a_variant()
    show_everything_to_alpha()
    with schema_context("alpha"):
        mine = Category(name="Our picks", slug="our-picks-upstream")
        mine.save()
        selection_add(kind=UpstreamSelection.Kind.PRODUCT, remote_id=variant.product_id, local_category=mine)
        sync_full()
        assert _copy(variant.product_id).category_id == mine.pk


def test_deselected_products_become_inactive_and_are_kept(site_a):
    gaming = site_a_category("Gaming")
    variant = site_a_variant(category=gaming)
    show_everything_to_alpha()
    with schema_context("alpha"):
        selection = selection_add(kind=UpstreamSelection.Kind.CATEGORY, remote_id=gaming.pk)
        sync_full()
        mirror = _copy(variant.product_id).category

        selection_remove(selection_id=selection.pk)
        assert UpstreamConnection.objects.get().full_sync_requested_at is not None
        result = sync_incremental()  # a selection change makes the next sync a full one

        copy = _copy(variant.product_id)
        assert copy.variants.count() == 1
        mirror.refresh_from_db()
    assert result.full and result.deactivated == 1
    assert not copy.is_active
    assert not mirror.is_active  # an emptied mirrored category is hidden from the storefront


def test_a_product_withdrawn_at_site_a_becomes_inactive_at_the_next_incremental_sync(site_a):
    variant = site_a_variant()
    show_everything_to_alpha()
    with schema_context("alpha"):
        selection_add(kind=UpstreamSelection.Kind.PRODUCT, remote_id=variant.product_id)
        sync_full()
    with schema_context("public"):
        product = Product.objects.get(pk=variant.product_id)
        product.is_active = False
        product.save()
    with schema_context("alpha"):
        result = sync_incremental()
        assert not _copy(variant.product_id).is_active
    assert result.deactivated == 1


def test_slug_and_sku_clashes_with_the_branchs_own_products_get_unique_values(site_a):
    variant = site_a_variant()
    with schema_context("public"):
        remote_slug, remote_sku = variant.product.slug, variant.sku
    show_everything_to_alpha()
    with schema_context("alpha"):
        own_category = Category(name="Own", slug="own-clash")
        own_category.save()
        own = Product.objects.create(category=own_category, name="Own", slug=remote_slug)
        Variant.objects.create(product=own, sku=remote_sku, name="own", price=D("1"))
        selection_add(kind=UpstreamSelection.Kind.PRODUCT, remote_id=variant.product_id)
        sync_full()
        copy = _copy(variant.product_id)
        copy_variant = copy.variants.get()
    assert copy.slug != remote_slug and copy.slug.startswith(remote_slug)
    assert copy_variant.sku != remote_sku and copy_variant.sku.endswith(remote_sku)


SYNTHETIC_PRODUCTS = 2000


def test_sync_queries_do_not_grow_with_the_number_of_products(site_a, capsys):
    """2,000 synthetic products (4 pages): a constant number of queries per page on both sides."""
    with schema_context("public"):
        category = Category(name="Bulk", slug="bulk-upstream")
        category.save()
        products = Product.objects.bulk_create(
            Product(category=category, name=f"Bulk {i}", slug=f"bulk-upstream-{i}") for i in range(SYNTHETIC_PRODUCTS)
        )
        Variant.objects.bulk_create(
            Variant(product=p, sku=f"BULK-UP-{p.pk}", name="one", price=D("3.00")) for p in products
        )
    show_everything_to_alpha()
    with schema_context("alpha"):
        selection_add(kind=UpstreamSelection.Kind.CATEGORY, remote_id=category.pk)
        queries = []

        def count(execute, sql, params, many, context):
            queries.append(sql)
            return execute(sql, params, many, context)

        started = time.perf_counter()
        with connection.execute_wrapper(count):  # (Site A's requests reset connection.queries)
            result = sync_full()
        seconds = time.perf_counter() - started
        again_started = time.perf_counter()
        again = sync_full()
        again_seconds = time.perf_counter() - again_started
        copies = Product.objects.filter(upstream_id__in=[p.pk for p in products], is_active=True).count()
    with capsys.disabled():
        print(
            f"\nsync_full of {SYNTHETIC_PRODUCTS:,} products: {seconds:.2f}s first ({len(queries)} queries, "
            f"Site A included), {again_seconds:.2f}s unchanged"
        )
    assert copies == result.created == again.unchanged == SYNTHETIC_PRODUCTS
    pages = -(-SYNTHETIC_PRODUCTS // PAGE_SIZE)
    assert len(queries) < 30 * pages + 40  # about 20 per page between both sides, not one per product


def test_an_incremental_sync_of_100_changes_is_a_handful_of_queries(site_a, capsys):
    with schema_context("public"):
        category = Category(name="Many", slug="many-upstream")
        category.save()
        products = Product.objects.bulk_create(
            Product(category=category, name=f"Many {i}", slug=f"many-upstream-{i}") for i in range(500)
        )
        variants = Variant.objects.bulk_create(
            Variant(product=p, sku=f"MANY-UP-{p.pk}", name="one", price=D("3.00")) for p in products
        )
    show_everything_to_alpha()
    with schema_context("alpha"):
        selection_add(kind=UpstreamSelection.Kind.CATEGORY, remote_id=category.pk)
        sync_full()
    with schema_context("public"):
        Variant.objects.filter(pk__in=[v.pk for v in variants[:100]]).update(price=D("4.00"), updated=timezone.now())

    queries = []

    def count(execute, sql, params, many, context):
        queries.append(sql)
        return execute(sql, params, many, context)

    with schema_context("alpha"):
        started = time.perf_counter()
        with connection.execute_wrapper(count):
            result = sync_incremental()
        seconds = time.perf_counter() - started
        costs = set(
            Variant.objects.filter(upstream_id__in=[v.pk for v in variants[:100]]).values_list("cost", flat=True)
        )
    with capsys.disabled():
        print(f"\nsync_incremental of 100 changes: {seconds:.3f}s ({len(queries)} queries, Site A included)")
    assert (result.full, costs) == (False, {D("4.00")})
    assert result.updated == 100  # the feed may repeat recent changes (its overlap); those are unchanged
    assert len(queries) < 60


def test_a_bulk_price_change_at_site_a_arrives_with_the_next_incremental_sync(site_a):
    """Site A's "Adjust prices" action changes many variants in one UPDATE; the change feed must still
    see them, or branches keep selling at the old cost."""
    from datetime import timedelta

    from cardvault.models import Card
    from catalog.services import variants_adjust_price, variants_set_price

    variant = site_a_variant(price="10.00", codes=3)
    show_everything_to_alpha()
    with schema_context("public"):
        # Made long ago, so only the change below can bring it into the feed (it overlaps by a minute).
        long_ago = timezone.now() - timedelta(hours=1)
        Variant.objects.filter(pk=variant.pk).update(updated=long_ago)
        Product.objects.filter(pk=variant.product_id).update(updated=long_ago)
        Card.objects.filter(variant=variant).update(status_changed_at=long_ago)
    with schema_context("alpha"):
        selection_add(kind=UpstreamSelection.Kind.PRODUCT, remote_id=variant.product_id)
        branch_markup_set(percent=D("50"))
        sync_full()
        assert sync_incremental().updated == 0  # nothing changed yet
    with schema_context("public"):
        variants_adjust_price(variant_ids=[variant.pk], percent=D("20"), field="price")
    with schema_context("alpha"):
        result = sync_incremental()
        copy = Variant.objects.get(upstream_id=variant.pk)
        assert not result.full and result.updated >= 1
        assert copy.cost == D("12.00") and _price(copy) == D("18.00")
    with schema_context("public"):
        variants_set_price(variant_ids=[variant.pk], amount=D("11.00"), field="price")
    with schema_context("alpha"):
        sync_incremental()
        assert Variant.objects.get(upstream_id=variant.pk).cost == D("11.00")
