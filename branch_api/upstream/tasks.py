"""Branch-side tasks (each runs in the branch schema it was queued from; periodic ones are fanned out
to every branch by ``core.tasks.branches_dispatch``)."""

from __future__ import annotations

import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(bind=True, ignore_result=True, max_retries=None)
def upstream_fulfil_task(self, order_id: int) -> None:
    """Buy a paid order's upstream lines from Site A and deliver them; retried with back-off while
    Site A is unreachable (safe to run twice: the purchase request is idempotent)."""
    from branch_api.upstream.services import upstream_fulfil

    upstream_fulfil(order_id=order_id, task=self)


@shared_task(ignore_result=True)
def upstream_sync_task(full: bool = False) -> str:
    """Periodic (per shop) incremental catalog pull, or a full one after the selection changed."""
    from branch_api.upstream.errors import UpstreamError
    from branch_api.upstream.models import UpstreamConnection
    from branch_api.upstream.services import sync_full, sync_incremental

    if not UpstreamConnection.objects.filter(is_enabled=True).exists():
        return "not connected"
    try:
        return (sync_full() if full else sync_incremental()).summary()
    except UpstreamError as exc:  # recorded on the connection; the next period tries again
        logger.warning("upstream sync failed: %s (%s)", exc.code, exc.message)
        return f"failed: {exc.code}"


@shared_task(ignore_result=True)
def upstream_retry_waiting_task() -> int:
    """Periodic (per shop): queue the purchases of orders waiting for Site A whose retry is due."""
    from branch_api.upstream.models import UpstreamConnection
    from branch_api.upstream.services import upstream_retry_waiting

    if not UpstreamConnection.objects.exists():
        return 0
    return upstream_retry_waiting()


@shared_task(ignore_result=True)
def upstream_balance_task() -> str:
    """Refresh the cached balance at Site A (queued by a balance.low webhook)."""
    from branch_api.upstream.services import connection_balance

    return str(connection_balance())
