import logging

from celery import shared_task
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from orders.models import Order

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def orders_expire_task() -> int:
    """Periodic (per shop, via the dispatcher): expire unpaid orders and free their codes."""
    from orders.services import orders_expire_due

    return orders_expire_due()


@shared_task(ignore_result=True)
def orders_retry_awaiting_stock_task(variant_id: int) -> int:
    """Queued after an import: deliver paid orders that were waiting for this variant's codes."""
    from orders.services import orders_retry_awaiting_stock

    return orders_retry_awaiting_stock(variant_id=variant_id)


@shared_task(bind=True, ignore_result=True, max_retries=8, default_retry_delay=60)
def order_delivery_email_task(self, order_id: int) -> None:
    """E-mail the delivered codes once. The claim on ``delivery_email_sent_at`` makes a duplicate
    run a no-op; a refused send releases the claim and retries."""
    from core.urls import shop_base_url
    from notifications.services import email_send
    from orders.selectors import order_delivered_codes

    claimed = Order.objects.filter(
        pk=order_id, status=Order.Status.DELIVERED, delivery_email_sent_at__isnull=True
    ).update(delivery_email_sent_at=timezone.now())
    if not claimed:
        return
    order = Order.objects.get(pk=order_id)
    codes = order_delivered_codes(order, channel="email")
    tenant = getattr(connection, "tenant", None)
    context = {
        "order": order,
        "lines": codes,
        "shop_name": getattr(tenant, "name", ""),
        "order_url": f"{shop_base_url()}/orders/{order.number}/",
    }
    if not email_send(key="order_delivered", to=order.email, context=context, reference=order.number):
        Order.objects.filter(pk=order_id).update(delivery_email_sent_at=None)
        raise self.retry()


@shared_task(ignore_result=True)
def order_staff_alert_task(order_id: int, reason: str) -> None:
    """Tell the shop's staff an order needs them (manual goods, or stock ran out after payment)."""
    from core.urls import shop_base_url
    from notifications.services import email_send

    order = Order.objects.get(pk=order_id)
    staff = get_user_model().objects.filter(is_staff=True, is_active=True).exclude(email="")
    context = {
        "order": order,
        "reason": reason,
        "admin_url": f"{shop_base_url()}/admin/orders/order/{order.pk}/change/",
    }
    for user in staff.only("email")[:20]:
        email_send(key="staff_order_alert", to=user.email, context=context, reference=order.number)


@shared_task(bind=True, ignore_result=True, max_retries=8, default_retry_delay=60)
def order_refund_email_task(self, refund_id: int) -> None:
    """Tell the customer about a settled refund, once (claimed like the delivery e-mail)."""
    from core.urls import shop_base_url
    from notifications.services import email_send
    from payments.models import Refund

    claimed = Refund.objects.filter(
        pk=refund_id, status=Refund.Status.SUCCEEDED, customer_notified_at__isnull=True
    ).update(customer_notified_at=timezone.now())
    if not claimed:
        return
    refund = Refund.objects.select_related("order").get(pk=refund_id)
    tenant = getattr(connection, "tenant", None)
    context = {
        "order": refund.order,
        "refund": refund,
        "shop_name": getattr(tenant, "name", ""),
        "order_url": f"{shop_base_url()}/orders/{refund.order.number}/",
    }
    if not email_send(key="order_refunded", to=refund.order.email, context=context, reference=refund.order.number):
        Refund.objects.filter(pk=refund_id).update(customer_notified_at=None)
        raise self.retry()
