"""Branch-side tasks (each runs in the branch schema it was queued from)."""

from celery import shared_task


@shared_task(bind=True, ignore_result=True, max_retries=None)
def upstream_fulfil_task(self, order_id: int) -> None:
    """Buy a paid order's upstream lines from Site A and deliver them (placeholder until sync lands)."""
    from branch_api.upstream.services import upstream_fulfil

    upstream_fulfil(order_id=order_id, task=self)
