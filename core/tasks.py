"""Platform-level tasks: the per-branch dispatcher and diagnostics."""

from __future__ import annotations

from celery import current_app, shared_task
from django.conf import settings
from django.core.cache import cache
from django.db import connection


@shared_task(ignore_result=True)
def branches_dispatch(task_name: str, kwargs: dict | None = None, include_platform: bool = False) -> int:
    """Queue ``task_name`` once per active branch, each copy running in that branch's schema.

    This is how per-branch periodic work is scheduled: beat holds one entry per job (pointing here),
    never one per branch, and the fan-out streams the branch list instead of loading it.
    ``include_platform`` also runs it for Site A's own shop (the public schema).
    """
    from tenants.models import Branch

    schemas = Branch.objects.filter(status=Branch.Status.ACTIVE)
    if not include_platform:
        schemas = schemas.exclude(schema_name=settings.PUBLIC_SCHEMA_NAME)
    schemas = schemas.values_list("schema_name", flat=True).order_by("pk")
    queued = 0
    for schema in schemas.iterator(chunk_size=500):
        current_app.send_task(task_name, kwargs=kwargs or {}, headers={"_schema_name": schema})
        queued += 1
    return queued


@shared_task(ignore_result=False)
def schema_whoami() -> str:
    """Diagnostic: the schema a task ran in (proves the schema travels with the task)."""
    return connection.schema_name


@shared_task(ignore_result=True)
def schema_mark(key: str) -> None:
    """Diagnostic: record in the current schema's cache that a task ran there."""
    cache.set(key, connection.schema_name, timeout=300)
