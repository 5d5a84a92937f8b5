"""Worker heartbeat: each Celery worker records itself in a Redis sorted set every few seconds.

/healthz reads the newest score instead of broadcasting a ping to the workers, so a health check
costs one Redis round trip and never waits on a timeout.
"""

from __future__ import annotations

import logging
import threading
import time

from celery.signals import worker_ready, worker_shutdown
from django.conf import settings

from core.redis import get_redis, platform_key

logger = logging.getLogger(__name__)
_stop = threading.Event()


def heartbeat_key() -> str:
    return platform_key("worker-heartbeats")


def worker_heartbeat(hostname: str) -> None:
    """Record that ``hostname`` is alive now and forget workers silent for an hour."""
    now = time.time()
    client = get_redis()
    client.zadd(heartbeat_key(), {hostname: now})
    client.zremrangebyscore(heartbeat_key(), 0, now - 3600)


def newest_heartbeat_age() -> float | None:
    """Seconds since the most recent heartbeat of any worker, or None if there is none."""
    newest = get_redis().zrevrange(heartbeat_key(), 0, 0, withscores=True)
    if not newest:
        return None
    return max(0.0, time.time() - newest[0][1])


def _beat(hostname: str) -> None:
    while not _stop.is_set():
        try:
            worker_heartbeat(hostname)
        except Exception:  # the loop must survive a Redis blip
            logger.warning("worker heartbeat failed", exc_info=True)
        _stop.wait(settings.WORKER_HEARTBEAT_INTERVAL)


@worker_ready.connect
def _start_heartbeat(sender=None, **kwargs):
    hostname = getattr(sender, "hostname", "worker")
    _stop.clear()
    threading.Thread(target=_beat, args=(hostname,), name="heartbeat", daemon=True).start()


@worker_shutdown.connect
def _stop_heartbeat(sender=None, **kwargs):
    _stop.set()
    try:
        get_redis().zrem(heartbeat_key(), getattr(sender, "hostname", "worker"))
    except Exception:
        logger.warning("could not remove worker heartbeat", exc_info=True)
