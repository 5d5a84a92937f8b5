"""Site A's branch-API tasks: webhook delivery. Webhook tables are public-schema only, so each task runs
in the public schema whatever schema queued it."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.utils import timezone
from django_tenants.utils import schema_context


@shared_task(ignore_result=True)
def webhook_deliver_task(delivery_id: int) -> None:
    """One attempt at a delivery; after a failure it queues the next attempt itself (up to
    ``ETA_HORIZON`` ahead; later retries are queued by the sweeper when they fall due)."""
    from branch_api.provider.models import WebhookDelivery
    from branch_api.provider.webhooks import ETA_HORIZON, ETA_MARGIN, webhook_deliver, webhook_queue

    with schema_context(settings.PUBLIC_SCHEMA_NAME):
        delivery = webhook_deliver(delivery_id=delivery_id)
    if delivery is None or delivery.status != WebhookDelivery.Status.PENDING or delivery.next_attempt_at is None:
        return
    if delivery.next_attempt_at - timezone.now() <= ETA_HORIZON:
        webhook_queue(delivery.pk, eta=delivery.next_attempt_at + ETA_MARGIN)


@shared_task(ignore_result=True)
def webhook_deliveries_sweep_task() -> int:
    """Periodic (beat, every minute): queue pending deliveries that are due and not in flight, and prune
    old finished ones. Returns how many were queued."""
    from branch_api.provider.webhooks import webhook_deliveries_due, webhook_deliveries_prune, webhook_queue

    with schema_context(settings.PUBLIC_SCHEMA_NAME):
        due = webhook_deliveries_due()
        webhook_deliveries_prune()
    for delivery_id in due:
        webhook_queue(delivery_id)
    return len(due)


@shared_task(ignore_result=True)
def stock_changed_flush_task() -> int:
    """Send one ``stock.changed`` for every variant whose stock moved in the last few seconds."""
    from branch_api.provider.webhooks import stock_changed_flush

    with schema_context(settings.PUBLIC_SCHEMA_NAME):
        return stock_changed_flush()


@shared_task(bind=True, ignore_result=True, max_retries=8, default_retry_delay=30)
def branch_sale_settle_task(self, sale_id: int, payment_reference: str = "") -> bool:
    """After Site A collected a branch sale: mark the branch's order paid in its schema (idempotent)."""
    from branch_api.provider.collect import branch_sale_settle

    try:
        return branch_sale_settle(sale_id=sale_id, payment_reference=payment_reference)
    except Exception as exc:  # the database of the branch unavailable, a deadlock ...: try again later
        raise self.retry(exc=exc) from exc


@shared_task(bind=True, ignore_result=True, max_retries=5, default_retry_delay=60)
def branch_sale_duplicate_refund_task(self, attempt_id: int) -> bool:
    """Refund a second payment of a branch order through Site A's channel (runs in Site A's schema)."""
    from branch_api.provider.collect import branch_sale_duplicate_refund

    with schema_context(settings.PUBLIC_SCHEMA_NAME):
        try:
            return branch_sale_duplicate_refund(attempt_id=attempt_id)
        except Exception as exc:  # the database unavailable, a deadlock ...: try again later
            raise self.retry(exc=exc) from exc


@shared_task(ignore_result=True)
def branch_sales_settle_due_task() -> int:
    """Periodic backstop for settle tasks that were lost (worker crash between commit and queueing)."""
    from branch_api.provider.collect import branch_sales_settle_due

    return branch_sales_settle_due()
