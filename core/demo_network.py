"""The demo's branch network: alpha and beta buy from Site A (idempotent, like the rest of the demo).

- alpha sees Site A's whole catalog, sells its Software licences at +50 % and has prepaid 500;
- beta sees one category (Game top-ups), sells it at +20 % and has prepaid 200; Site A collects its
  customers' payments (platform-collect mode), so each sale adds beta's profit to that balance;
- a few customer orders for Site A products were already bought upstream and delivered.

Branches reach Site A through the signed HTTP API; during seeding the web server is not up yet, so
the calls go through the same Django stack in-process (httpx's WSGI transport).
"""

from __future__ import annotations

from contextlib import contextmanager
from decimal import Decimal

from django.conf import settings
from django_tenants.utils import schema_context

NETWORK = {
    # slug: (categories visible at Site A (None = everything), category sold, markup %, prepaid)
    "alpha": (None, "software-licences", Decimal("50"), Decimal("500.00")),
    "beta": (("game-top-ups",), "game-top-ups", Decimal("20"), Decimal("200.00")),
}
# Branches whose customers pay through Site A's channels; the others take payments themselves.
PLATFORM_COLLECT = {"beta"}
UPSTREAM_ORDERS = {
    "alpha": (("olivia.brown@example.com", 1), ("kenji.sato@example.jp", 2)),
    "beta": (("ana.silva@example.com.br", 1),),
}


@contextmanager
def _site_a_in_process():
    import httpx
    from django.core.wsgi import get_wsgi_application

    from branch_api.upstream import client

    previous = client.DEFAULT_TRANSPORT
    client.DEFAULT_TRANSPORT = httpx.WSGITransport(app=get_wsgi_application())
    try:
        yield
    finally:
        client.DEFAULT_TRANSPORT = previous


def demo_network_seed() -> None:
    """Connect the demo branches to Site A and book a few upstream sales (safe to re-run)."""
    with _site_a_in_process():
        for slug, (visible, sold_category, markup, prepaid) in NETWORK.items():
            _terms_ensure(slug, visible, prepaid)
            _branch_side_ensure(slug, sold_category, markup)
            _upstream_orders_ensure(slug)


def _terms_ensure(slug: str, visible: tuple[str, ...] | None, prepaid: Decimal) -> None:
    from branch_api.provider.models import BranchTerms
    from branch_api.provider.services import branch_top_up, terms_ensure
    from catalog.models import Category
    from tenants.models import Branch

    with schema_context(settings.PUBLIC_SCHEMA_NAME):
        branch = Branch.objects.get(slug=slug)
        terms = terms_ensure(branch)
        terms.show_everything = visible is None
        terms.mode = BranchTerms.Mode.PLATFORM_COLLECT if slug in PLATFORM_COLLECT else BranchTerms.Mode.OWN_GATEWAY
        terms.save()
        if visible:
            terms.visible_categories.set(Category.objects.filter(slug__in=visible))
        branch_top_up(
            branch=branch, amount=prepaid, reference="demo opening balance", idempotency_key=f"demo-top-up:{slug}"
        )


def _branch_side_ensure(slug: str, sold_category: str, markup: Decimal) -> None:
    from branch_api.upstream.models import UpstreamConnection, UpstreamSelection
    from branch_api.upstream.services import branch_markup_set, selection_add
    from branch_api.upstream.sync import sync_full
    from catalog.models import Category

    with schema_context(settings.PUBLIC_SCHEMA_NAME):
        remote = Category.objects.get(slug=sold_category)
        remote_id, remote_name = remote.pk, remote.name
    with schema_context(slug):
        # Same deployment: follow the port `make run` serves on today.
        UpstreamConnection.objects.filter(host_header=settings.PLATFORM_DOMAIN).update(
            base_url=settings.BRANCH_UPSTREAM_URL
        )
        if not UpstreamSelection.objects.filter(kind=UpstreamSelection.Kind.CATEGORY, remote_id=remote_id).exists():
            selection_add(kind=UpstreamSelection.Kind.CATEGORY, remote_id=remote_id, name=remote_name)
        branch_markup_set(percent=markup)
        sync_full()


def _upstream_orders_ensure(slug: str) -> None:
    from catalog.models import Product, Variant
    from orders.models import Order
    from orders.services import CartItem, order_place
    from payments.services import payment_start

    with schema_context(slug):
        variant = (
            Variant.objects.filter(
                product__delivery_mode=Product.DeliveryMode.UPSTREAM,
                product__is_active=True,
                is_active=True,
                upstream_stock__gt=2,
            )
            .order_by("pk")
            .first()
        )
        if variant is None:
            return
        for email, quantity in UPSTREAM_ORDERS[slug]:
            if Order.objects.filter(email=email).exists():
                continue
            order = order_place(
                items=[CartItem(variant_id=variant.pk, quantity=quantity)], email=email, client_ip="127.0.0.1"
            )
            attempt, _url = payment_start(order=order, provider_code="sandbox")
            _sandbox_pays(attempt)
            _fulfil_until_delivered(order.pk)


def _sandbox_pays(attempt) -> None:
    """The sandbox gateway confirms ``attempt`` to the shop that opened it: Site A for a sale it
    collects (which then marks the branch's order paid; done here too, in case no worker runs)."""
    from branch_api.provider.collect import branch_sale_settle
    from payments.models import PaymentAttempt
    from payments.providers.sandbox import SandboxProvider
    from payments.services import payment_callback_handle

    if attempt.purpose != PaymentAttempt.Purpose.BRANCH_SALE:
        payment_callback_handle(provider_code="sandbox", data=SandboxProvider().notification(attempt=attempt))
        return
    with schema_context(settings.PUBLIC_SCHEMA_NAME):
        payment_callback_handle(provider_code="sandbox", data=SandboxProvider().notification(attempt=attempt))
    branch_sale_settle(sale_id=attempt.subject_id, payment_reference=f"sandbox:{attempt.token}")


def _fulfil_until_delivered(order_id: int, *, seconds: float = 15) -> None:
    """Buy the order's codes from Site A now. A worker that picked up the task the payment queued may
    be doing the same at this moment (Site A then answers "in flight"): wait for it to land."""
    import time

    from branch_api.upstream.services import FulfilOutcome, upstream_fulfil
    from orders.models import Order

    deadline = time.monotonic() + seconds
    while upstream_fulfil(order_id=order_id) != FulfilOutcome.DELIVERED and time.monotonic() < deadline:
        if Order.objects.filter(pk=order_id, status=Order.Status.DELIVERED).exists():
            return
        time.sleep(0.3)
