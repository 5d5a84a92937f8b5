"""Health checks behind GET /healthz."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import connection

from core.redis import get_redis
from core.worker import newest_heartbeat_age


@dataclass
class CheckResult:
    ok: bool
    ms: float
    detail: str = ""


def _check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return ""


def _check_redis() -> str:
    get_redis().ping()
    return ""


def _check_worker() -> str:
    age = newest_heartbeat_age()
    if age is None:
        raise RuntimeError("no Celery worker has reported a heartbeat")
    if age > settings.WORKER_HEARTBEAT_TTL:
        raise RuntimeError(f"last worker heartbeat {age:.0f}s ago")
    return f"heartbeat {age:.0f}s ago"


CHECKS: dict[str, Callable[[], str]] = {
    "database": _check_database,
    "redis": _check_redis,
    "worker": _check_worker,
}


def health_run() -> dict[str, CheckResult]:
    """Run every check; a failing check never raises, it reports."""
    results: dict[str, CheckResult] = {}
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            detail = check()
            ok = True
        except Exception as exc:  # any failure is a failed check, reported by name
            detail, ok = f"{type(exc).__name__}: {exc}", False
        results[name] = CheckResult(ok=ok, ms=round((time.perf_counter() - started) * 1000, 2), detail=detail)
    return results
