"""A branch that sells a whole Site A category can leave single products of it out: an excluded
product is hidden at once, stays hidden whatever the syncs read, and comes back when un-excluded."""

from __future__ import annotations

from decimal import Decimal

from django_tenants.utils import schema_context

from branch_api.upstream.models import UpstreamSelection
from branch_api.upstream.services import selection_add, selection_remove, sync_full, sync_incremental
from catalog.models import Product
from conftest import DEMO, host_client

from .conftest import show_everything_to_alpha, site_a_category, site_a_variant

K = UpstreamSelection.Kind


def _active(remote_product_id: int) -> bool:
    with schema_context("alpha"):
        return Product.objects.get(upstream_id=remote_product_id).is_active


def _page_status(remote_product_id: int) -> int:
    with schema_context("alpha"):
        slug = Product.objects.get(upstream_id=remote_product_id).slug
    return host_client("alpha.localhost").get(f"/p/{slug}/").status_code


def _category_with_two_products():
    gaming = site_a_category("Gaming")
    kept = site_a_variant(category=gaming, name="Kept card")
    left_out = site_a_variant(category=gaming, name="Left out card")
    show_everything_to_alpha()
    with schema_context("alpha"):
        selection_add(kind=K.CATEGORY, remote_id=gaming.pk, name="Gaming")
        sync_full()
    return kept, left_out


def test_an_excluded_product_is_hidden_at_once_and_stays_out_across_syncs(site_a):
    kept, left_out = _category_with_two_products()
    assert _active(left_out.product_id) and _page_status(left_out.product_id) == 200

    with schema_context("alpha"):
        exclusion = selection_add(kind=K.EXCLUDED, remote_id=left_out.product_id, name="Left out card")
    assert not _active(left_out.product_id) and _page_status(left_out.product_id) == 404

    with schema_context("alpha"):
        full = sync_full()
    assert full.deactivated == 0 and _active(kept.product_id) and not _active(left_out.product_id)

    with schema_context("public"):
        left_out.price = Decimal("11.00")  # Site A changes it: the change feed sends it again
        left_out.save()
    with schema_context("alpha"):
        incremental = sync_incremental()
    assert not incremental.full and not _active(left_out.product_id)

    with schema_context("alpha"):
        selection_remove(selection_id=exclusion.pk)
        again = sync_incremental()  # the selection changed: a full read brings it back
    assert again.full and _active(left_out.product_id) and _page_status(left_out.product_id) == 200
    with schema_context("alpha"):
        assert Product.objects.get(upstream_id=left_out.product_id).variants.get().cost == Decimal("11.00")


def test_selecting_an_excluded_product_by_itself_sells_it_again(site_a):
    _kept, left_out = _category_with_two_products()
    with schema_context("alpha"):
        selection_add(kind=K.EXCLUDED, remote_id=left_out.product_id)
        selection_add(kind=K.PRODUCT, remote_id=left_out.product_id)
        assert list(UpstreamSelection.objects.filter(remote_id=left_out.product_id).values_list("kind")) == [
            (K.PRODUCT,)
        ]
        sync_incremental()
    assert _active(left_out.product_id)


def test_the_browse_page_excludes_a_product_of_a_selected_category(site_a):
    kept, left_out = _category_with_two_products()
    client = host_client("alpha.localhost")
    email, password = DEMO["alpha"][1], DEMO["alpha"][2]
    assert client.post("/accounts/login/", {"login": email, "password": password}).status_code == 302
    url = "/admin/branch_upstream/upstreamselection/browse/"

    html = client.get(url).content.decode()
    assert f'name="excluded" value="{left_out.product_id}"' in html

    response = client.post(
        url, {"excluded": [str(left_out.product_id)], f"name_excluded_{left_out.product_id}": "Left out card"}
    )
    assert response.status_code == 302
    assert not _active(left_out.product_id) and _active(kept.product_id)
    with schema_context("alpha"):
        exclusion = UpstreamSelection.objects.get(kind=K.EXCLUDED)
        assert (exclusion.remote_id, exclusion.name) == (left_out.product_id, "Left out card")
    assert "excluded" in client.get(url).content.decode()
    listing = client.get("/admin/branch_upstream/upstreamselection/?kind=excluded").content.decode()
    assert "Left out card" in listing

    # Un-excluding is deleting the exclusion in the list.
    delete = f"/admin/branch_upstream/upstreamselection/{exclusion.pk}/delete/"
    assert client.post(delete, {"post": "yes"}).status_code == 302
    with schema_context("alpha"):
        sync_incremental()
    assert _active(left_out.product_id)
