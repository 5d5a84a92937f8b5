"""Test code on real threads against PostgreSQL, released at the same moment."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from django.db import connection


def at_once(target: Callable[..., object], calls: Iterable[tuple], *, timeout: float = 60) -> None:
    """Run ``target(*args)`` for each ``args`` of ``calls`` on its own thread, all released together by
    a barrier, and wait for them. Each thread closes its own database connection when done."""
    calls = list(calls)
    start = threading.Barrier(len(calls))

    def run(*args) -> None:
        try:
            start.wait(10)
            target(*args)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=args) for args in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
