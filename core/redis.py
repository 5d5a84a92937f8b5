"""A plain Redis client for platform-level keys (heartbeats, nonces) that are not tenant cache."""

from functools import lru_cache

import redis
from django.conf import settings


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)


def get_redis() -> redis.Redis:
    return _client(settings.REDIS_URL)


def platform_key(*parts: str) -> str:
    """Keys outside the tenant cache namespace; never holds tenant data."""
    return ":".join([settings.CACHE_KEY_PREFIX, "platform", *parts])
