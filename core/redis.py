"""A plain Redis client for platform-level keys (heartbeats, nonces) that are not tenant cache."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
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


# --- Keys read once per request ----------------------------------------------------------------
# A request reads a few platform keys no matter what it does (the host's branch, the version of the
# API callers kept in memory). Registered here, they travel with the request's first read, the
# host lookup: one round trip instead of one each.

_request_keys: list[Callable[[], str]] = []
_request_values: ContextVar[dict[str, bytes | None] | None] = ContextVar("request_redis_values", default=None)


def request_key_register(key: Callable[[], str]) -> None:
    """Read the key ``key()`` names along with every request's host lookup (``request_get``)."""
    if key not in _request_keys:
        _request_keys.append(key)


@contextmanager
def request_scope() -> Iterator[None]:
    """The span of one request: what ``request_get`` read is remembered until it ends."""
    token = _request_values.set({})
    try:
        yield
    finally:
        _request_values.reset(token)


def request_get(key: str) -> bytes | None:
    """``GET key``; inside a request, together with the registered keys (one ``MGET``), which
    ``request_value`` then answers without a round trip."""
    values = _request_values.get()
    if values is None:
        return get_redis().get(key)
    keys = [key, *(make() for make in _request_keys)]
    values.update(zip(keys, get_redis().mget(keys), strict=True))
    return values[key]


def request_value(key: str) -> tuple[bool, bytes | None]:
    """(True, value) when this request already read ``key``, else (False, None)."""
    values = _request_values.get()
    if values is None or key not in values:
        return False, None
    return True, values[key]
