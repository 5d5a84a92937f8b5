"""Tasks carry their schema; the public dispatcher fans per-branch work out to each branch."""

import time

import pytest
from django.core.cache import cache
from django_tenants.utils import schema_context

from core.tasks import branches_dispatch, schema_mark, schema_whoami
from tenants.models import Branch


@pytest.mark.parametrize("schema", ["alpha", "beta", "public"])
def test_task_runs_in_the_schema_it_was_queued_from(live_db, celery_worker_thread, schema):
    with schema_context(schema):
        result = schema_whoami.delay()
    assert result.get(timeout=30) == schema


def test_dispatcher_runs_a_task_once_in_every_active_branch(live_db, celery_worker_thread):
    Branch.objects.filter(slug="beta").update(status=Branch.Status.SUSPENDED)
    try:
        queued = branches_dispatch.delay("core.tasks.schema_mark", {"key": "dispatch-probe"})
        deadline = time.monotonic() + 30
        seen = None
        while time.monotonic() < deadline:
            with schema_context("alpha"):
                seen = cache.get("dispatch-probe")
            if seen:
                break
            time.sleep(0.1)
        assert seen == "alpha"
        with schema_context("beta"):
            assert cache.get("dispatch-probe") is None  # suspended: skipped
        with schema_context("public"):
            assert cache.get("dispatch-probe") is None  # Site A is not a branch
        assert queued is not None
    finally:
        Branch.objects.filter(slug="beta").update(status=Branch.Status.ACTIVE)


def test_dispatcher_counts_the_branches_it_queued(live_db):
    from unittest import mock

    with mock.patch("core.tasks.current_app.send_task") as send_task:
        count = branches_dispatch("core.tasks.schema_mark", {"key": "x"})
    active = Branch.objects.filter(status="active").exclude(schema_name="public").count()
    assert count == active == send_task.call_count
    schemas = {call.kwargs["headers"]["_schema_name"] for call in send_task.call_args_list}
    assert {"alpha", "beta"} <= schemas and "public" not in schemas

    with mock.patch("core.tasks.current_app.send_task") as send_task:
        branches_dispatch("orders.tasks.orders_expire_task", include_platform=True)
    schemas = {call.kwargs["headers"]["_schema_name"] for call in send_task.call_args_list}
    assert "public" in schemas  # Site A's own shop expires its orders too


def test_schema_mark_writes_to_its_own_schema_cache(db):
    with schema_context("beta"):
        schema_mark("probe")
        assert cache.get("probe") == "beta"
    with schema_context("alpha"):
        assert cache.get("probe") is None
