import logging

from celery import shared_task
from django.db import OperationalError

from tenants.models import Branch

logger = logging.getLogger(__name__)


@shared_task(
    bind=True,
    autoretry_for=(OperationalError,),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=5,
    acks_late=True,
)
def branch_provision_task(self, branch_id: int) -> dict:
    """Provision a signed-up branch. Idempotent: a redelivery after a crash just finishes the job."""
    from tenants.services import branch_provision_pending

    try:
        return branch_provision_pending(branch_id=branch_id).as_dict()
    except OperationalError:
        raise
    except Exception as exc:
        # Not recoverable by retrying: record it for the sign-up page and the admin.
        logger.exception("provisioning branch %s failed", branch_id)
        Branch.objects.filter(pk=branch_id, status=Branch.Status.PROVISIONING).update(
            status=Branch.Status.FAILED, status_reason=str(exc)[:255]
        )
        raise
