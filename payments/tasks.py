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
