"""Periodic payment work, run per shop through ``core.tasks.branches_dispatch``."""

from __future__ import annotations

from celery import shared_task


@shared_task(ignore_result=True)
def reconciliation_daily_task() -> int:
    """Reconcile yesterday (shop time) for each channel with an automatic source; returns the runs made.

    Gateway errors end as failed runs (shown in the admin), not as retries: staff re-run the day.
    """
    from payments.reconciliation import reconciliation_run_yesterday

    return len(reconciliation_run_yesterday())


@shared_task(bind=True, ignore_result=True, max_retries=5, default_retry_delay=60)
def duplicate_payment_refund_task(self, attempt_id: int) -> bool:
    """Refund a second payment of an order through its channel (in the schema it was queued from)."""
    from payments.duplicates import duplicate_payment_refund

    try:
        return duplicate_payment_refund(attempt_id=attempt_id)
    except Exception as exc:  # the database unavailable, a deadlock ...: try again later
        raise self.retry(exc=exc) from exc
