"""Reads of the branch's upstream state: the connection, the markup, orders waiting for Site A."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from branch_api.upstream.errors import NotConnected
from branch_api.upstream.models import UpstreamConnection, UpstreamPurchase
from catalog.models import PriceList, PriceRule, Product
from orders.models import Order, OrderLine

# A purchase still "buying" is left to its own Celery retry this long past its due time before the
# periodic sweep assumes that retry was lost (a worker crash) and queues another.
RETRY_GRACE = timedelta(seconds=90)


def connection_get() -> UpstreamConnection:
    """The shop's connection to Site A (there is one row); ``NotConnected`` if it has none."""
    connection = UpstreamConnection.objects.order_by("pk").first()
    if connection is None:
        raise NotConnected()
    return connection


def markup_rule_get() -> PriceRule | None:
    """The rule that prices everything without a more specific rule in the storefront price list."""
    price_list = PriceList.objects.filter(is_default=True).first()
    if price_list is None:
        return None
    # PriceBook breaks ties between "all" rules by the newest one.
    return price_list.rules.filter(scope=PriceRule.Scope.ALL, is_active=True).order_by("-pk").first()


def markup_percent_get() -> Decimal | None:
    rule = markup_rule_get()
    return rule.value if rule is not None and rule.mode == PriceRule.Mode.PERCENT_MARKUP else None


def upstream_orders_due(*, limit: int = 200) -> list[int]:
    """Paid orders waiting for Site A with a line whose purchase should be (re)tried now, oldest first.

    A line never tried (its task was lost), a refused purchase whose back-off ran out, or a purchase
    whose own retry is overdue. Lines whose codes already came back are not retried.
    """
    now = timezone.now()
    overdue = now - RETRY_GRACE
    open_lines = OrderLine.objects.filter(
        order=OuterRef("pk"), delivery_mode=Product.DeliveryMode.UPSTREAM, delivered_quantity__lt=F("quantity")
    )
    purchase = "upstream_purchase__"
    due = open_lines.filter(
        Q(**{f"{purchase}isnull": True}, order__paid_at__lte=overdue)
        | Q(**{f"{purchase}status": UpstreamPurchase.Status.BLOCKED, f"{purchase}next_attempt_at__lte": now})
        | Q(**{f"{purchase}status": UpstreamPurchase.Status.PENDING, f"{purchase}next_attempt_at__lte": overdue})
        | Q(
            **{
                f"{purchase}status": UpstreamPurchase.Status.PENDING,
                f"{purchase}next_attempt_at__isnull": True,
                f"{purchase}created__lte": overdue,
            }
        )
    )
    orders = Order.objects.filter(status=Order.Status.AWAITING_UPSTREAM).filter(Exists(due)).order_by("paid_at", "pk")
    return list(orders.values_list("pk", flat=True)[:limit])
