"""/healthz on every domain: database, Redis and worker checks, 503 naming what failed."""

import pytest
from django.db import OperationalError, connection
from django.test import override_settings

from conftest import host_client
from core.redis import get_redis
from core.worker import heartbeat_key, worker_heartbeat

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("host", "schema"), [("localhost", "public"), ("alpha.localhost", "alpha")])
def test_healthz_is_ok_with_a_live_worker(host, schema):
    worker_heartbeat("celery@test")
    response = host_client(host).get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["schema"] == schema and body["failing"] == []
    assert set(body["checks"]) == {"database", "redis", "worker"}


def test_real_worker_reports_itself(celery_worker_thread, live_db):
    from core.worker import _start_heartbeat

    # The in-process test worker does not send worker_ready, so start its heartbeat like a real one.
    _start_heartbeat(sender=celery_worker_thread)
    response = host_client("beta.localhost").get("/healthz")
    assert response.status_code == 200, response.json()


def test_no_worker_is_503_naming_worker():
    response = host_client("beta.localhost").get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail" and body["failing"] == ["worker"]
    assert "no Celery worker" in body["checks"]["worker"]["detail"]


@override_settings(WORKER_HEARTBEAT_TTL=30)
def test_stale_worker_heartbeat_is_503():
    import time

    get_redis().zadd(heartbeat_key(), {"celery@old": time.time() - 120})
    response = host_client("localhost").get("/healthz")
    assert response.status_code == 503 and response.json()["failing"] == ["worker"]


def test_redis_down_is_503_naming_redis_and_worker():
    worker_heartbeat("celery@test")
    host_client("alpha.localhost").get("/healthz")  # routing now cached
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        response = host_client("alpha.localhost").get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert "redis" in body["failing"]
    assert body["checks"]["redis"]["ok"] is False and body["checks"]["database"]["ok"] is True


def test_database_down_is_503_naming_database(monkeypatch):
    worker_heartbeat("celery@test")
    client = host_client("alpha.localhost")
    client.get("/healthz")  # routing now cached, so only the check itself touches the database

    def broken_cursor(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(connection, "cursor", broken_cursor)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["database"]


def test_database_down_before_routing_is_still_a_503_not_a_500(monkeypatch):
    def broken_cursor(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(connection, "cursor", broken_cursor)
    response = host_client("beta.localhost").get("/healthz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["database"]
    page = host_client("beta.localhost").get("/")
    assert page.status_code == 503
