"""A branch (alpha) talking to Site A in-process: the real client, real signatures, Site A's real
middleware, authentication and idempotency, through ``httpx.WSGITransport``. Data is committed
(``live_db``) because each call to Site A must happen outside any transaction, as in production."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from django.core.wsgi import get_wsgi_application
from django.utils import timezone
from django_tenants.utils import schema_context

from branch_api.upstream import client as upstream_client

BRANCH = "alpha"


class SiteATransport(httpx.BaseTransport):
    """Site A served in-process; ``down = True`` makes every call fail as a refused connection."""

    def __init__(self):
        self.app = httpx.WSGITransport(app=get_wsgi_application())
        self.down = False
        self.calls: list[tuple[str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        self.calls.append((request.method, request.url.path))
        return self.app.handle_request(request)


class Queued:
    """Stands in for ``upstream_fulfil_task.delay``: records what would have been queued."""

    def __init__(self):
        self.order_ids: list[int] = []

    def __call__(self, order_id: int, *args, **kwargs):
        self.order_ids.append(order_id)


def _branch_reset() -> None:
    """Forget what a previous test left in alpha's upstream tables and Site A's terms for alpha."""
    from branch_api.provider.models import BranchTerms, IdempotencyRecord
    from branch_api.upstream.models import UpstreamCategory, UpstreamConnection, UpstreamPurchase, UpstreamSelection
    from tenants.models import Branch

    with schema_context("public"):
        terms = BranchTerms.objects.filter(branch__slug=BRANCH).first()
        if terms is not None:
            terms.visible_categories.clear()
            terms.visible_products.clear()
            terms.show_everything = False
            terms.price_list = None
            terms.save()
        IdempotencyRecord.objects.filter(branch=Branch.objects.get(slug=BRANCH)).delete()
    with schema_context(BRANCH):
        UpstreamPurchase.objects.all().delete()
        UpstreamSelection.objects.all().delete()
        UpstreamCategory.objects.all().delete()
        UpstreamConnection.objects.update(
            sync_cursor="",
            full_sync_requested_at=None,
            status=UpstreamConnection.Status.UNKNOWN,
            last_error="",
            is_enabled=True,
        )


@pytest.fixture
def site_a(live_db, monkeypatch) -> SiteATransport:
    """Alpha's client reaches Site A in-process; fulfilment tasks are recorded, not sent to a broker."""
    from branch_api.upstream.tasks import upstream_fulfil_task

    transport = SiteATransport()
    monkeypatch.setattr(upstream_client, "DEFAULT_TRANSPORT", transport)
    monkeypatch.setattr(upstream_fulfil_task, "delay", Queued())
    _branch_reset()
    yield transport
    _branch_reset()


@pytest.fixture
def queued(site_a) -> Queued:
    from branch_api.upstream.tasks import upstream_fulfil_task

    return upstream_fulfil_task.delay


def site_a_variant(*, price: str = "10.00", codes: int = 3, category=None, name: str | None = None):
    """A product on Site A (public schema) whose branch cost is ``price`` (Site A's list price)."""
    from tests.commerce import product_with_codes

    with schema_context("public"):
        return product_with_codes(codes=codes, price=price, cost="8.00", category=category, name=name)


def site_a_category(name: str, parent=None):
    from catalog.models import Category

    with schema_context("public"):
        slug = f"{name.lower().replace(' ', '-')}-{Category.objects.count() + 1}"
        category = Category(name=name, slug=slug, parent=parent)
        category.save()
        return category


def show_everything_to_alpha() -> None:
    from branch_api.provider.services import terms_ensure
    from tenants.models import Branch

    with schema_context("public"):
        terms = terms_ensure(Branch.objects.get(slug=BRANCH))
        terms.show_everything = True
        terms.save()
        # Terms changed within the change feed's overlap make Site A answer "full"; as if set long ago.
        type(terms).objects.filter(pk=terms.pk).update(updated=timezone.now() - timedelta(hours=1))


def top_up(amount: str, key: str) -> None:
    from branch_api.provider.services import branch_top_up
    from tenants.models import Branch

    with schema_context("public"):
        branch_top_up(
            branch=Branch.objects.get(slug=BRANCH), amount=Decimal(amount), reference=key, idempotency_key=key
        )


def alpha_balance_at_site_a() -> Decimal:
    from branch_api.provider.services import branch_balance_account
    from tenants.models import Branch

    with schema_context("public"):
        return branch_balance_account(Branch.objects.get(slug=BRANCH)).natural_balance
