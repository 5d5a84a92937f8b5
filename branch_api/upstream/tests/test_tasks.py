"""Periodic per-branch work (through the dispatcher) and the purchase task on a real Celery worker."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.utils import timezone
from django_tenants.utils import schema_context

from branch_api.upstream.models import UpstreamConnection, UpstreamPurchase, UpstreamSelection
from branch_api.upstream.services import branch_markup_set, selection_add
from branch_api.upstream.tasks import upstream_fulfil_task, upstream_retry_waiting_task, upstream_sync_task
from catalog.models import Product, Variant
from orders.models import Order
from tests.commerce import pay, place

from .conftest import show_everything_to_alpha, site_a_variant, top_up


def test_beat_runs_the_sync_and_the_retry_sweep_for_every_branch_through_the_dispatcher():
    entries = [e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == "core.tasks.branches_dispatch"]
    tasks = {entry["args"][0] for entry in entries}
    assert {upstream_sync_task.name, upstream_retry_waiting_task.name} <= tasks


def test_the_periodic_sync_runs_a_full_sync_after_the_selection_changed(site_a):
    variant = site_a_variant()
    show_everything_to_alpha()
    with schema_context("alpha"):
        selection_add(kind=UpstreamSelection.Kind.PRODUCT, remote_id=variant.product_id)
        assert upstream_sync_task().startswith("full:")
        assert Product.objects.get(upstream_id=variant.product_id).is_active
        assert upstream_sync_task().startswith("incremental:")
    site_a.down = True
    with schema_context("alpha"):
        assert upstream_sync_task() == "failed: unreachable"  # recorded, not raised: the next period retries
        assert UpstreamConnection.objects.get().status == UpstreamConnection.Status.ERROR


def test_the_periodic_sweep_requeues_a_refused_purchase_when_its_back_off_ran_out(site_a, queued):
    variant = site_a_variant()
    show_everything_to_alpha()
    with schema_context("alpha"):
        selection_add(kind=UpstreamSelection.Kind.PRODUCT, remote_id=variant.product_id)
        upstream_sync_task()
        order = place(Variant.objects.get(upstream_id=variant.pk), 1)
        pay(order)
        upstream_fulfil_task.run(order.pk)  # no balance: refused, no Celery retry
        queued.order_ids.clear()
        assert upstream_retry_waiting_task() == 0
        UpstreamPurchase.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
        assert upstream_retry_waiting_task() == 1
    assert queued.order_ids == [order.pk]


def test_a_paid_order_is_bought_and_delivered_by_the_celery_worker(site_a, celery_worker_thread, monkeypatch):
    monkeypatch.delattr(upstream_fulfil_task, "delay")  # the real one: through Redis to the worker
    variant = site_a_variant(price="10.00")
    show_everything_to_alpha()
    top_up("20.00", f"worker-top-up-{variant.pk}")
    with schema_context("alpha"):
        selection_add(kind=UpstreamSelection.Kind.PRODUCT, remote_id=variant.product_id)
        branch_markup_set(percent=Decimal("50"))
        upstream_sync_task()
        order = place(Variant.objects.get(upstream_id=variant.pk), 1)
        assert pay(order) == (True, "ok")  # queues upstream_fulfil_task in alpha's schema on commit
        deadline = time.monotonic() + 30
        while Order.objects.get(pk=order.pk).status != Order.Status.DELIVERED and time.monotonic() < deadline:
            time.sleep(0.2)
        assert Order.objects.get(pk=order.pk).status == Order.Status.DELIVERED
        assert UpstreamPurchase.objects.get().status == UpstreamPurchase.Status.DONE
