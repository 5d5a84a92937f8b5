"""Host -> branch resolution, cached in Redis.

Every request needs it, so the answer (including "no such host") is cached under a platform key
and dropped as soon as a Branch or Domain changes (see ``tenants.signals``).
"""

from __future__ import annotations

import json
import logging

from django.conf import settings

from core.redis import get_redis, platform_key, request_get
from tenants.models import Branch, Domain

logger = logging.getLogger(__name__)

# Fields the router needs; anything else is loaded lazily on first access.
_CACHED_FIELDS = ("id", "schema_name", "name", "slug", "currency", "status")
_UNKNOWN = ""
# Unknown hosts are cached briefly, so junk Host headers don't each cost a query.
_UNKNOWN_TTL = 30


def normalize_host(host: str) -> str:
    """``WWW.Alpha.Example.com.:8000`` -> ``alpha.example.com``."""
    host = host.strip().lower()
    if host.startswith("["):  # IPv6 literal
        host = host.split("]", 1)[0] + "]"
    else:
        host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    host = host.rstrip(".")
    if host.startswith("www."):
        host = host[4:]
    return host


def host_cache_key(hostname: str) -> str:
    return platform_key("host", hostname)


def _from_cache(hostname: str) -> Branch | None | str:
    try:
        raw = request_get(host_cache_key(hostname))
    except Exception:  # Redis down: fall back to the database
        logger.warning("domain cache unavailable", exc_info=True)
        return None
    if raw is None:
        return None
    if raw.decode() == _UNKNOWN:
        return _UNKNOWN
    values = json.loads(raw)
    return Branch.from_db("default", list(_CACHED_FIELDS), [values[f] for f in _CACHED_FIELDS])


def _to_cache(hostname: str, branch: Branch | None) -> None:
    if branch is None:
        payload, ttl = _UNKNOWN, _UNKNOWN_TTL
    else:
        payload = json.dumps({f: getattr(branch, f) for f in _CACHED_FIELDS})
        ttl = settings.TENANT_DOMAIN_CACHE_SECONDS
    try:
        get_redis().set(host_cache_key(hostname), payload, ex=ttl)
    except Exception:
        logger.warning("domain cache unavailable", exc_info=True)


def branch_for_host(hostname: str) -> Branch:
    """The branch serving ``hostname``; raises ``Domain.DoesNotExist`` for unknown hosts."""
    cached = _from_cache(hostname)
    if cached == _UNKNOWN:
        raise Domain.DoesNotExist(hostname)
    if cached is not None:
        return cached
    domain = (
        Domain.objects.select_related("tenant")
        .only(*(f"tenant__{f}" for f in _CACHED_FIELDS), "domain", "tenant_id")
        .filter(domain=hostname)
        .first()
    )
    _to_cache(hostname, domain.tenant if domain else None)
    if domain is None:
        raise Domain.DoesNotExist(hostname)
    return domain.tenant


def host_cache_forget(*hostnames: str) -> None:
    keys = [host_cache_key(normalize_host(h)) for h in hostnames if h]
    if keys:
        try:
            get_redis().delete(*keys)
        except Exception:
            logger.error("could not invalidate domain cache for %s", hostnames, exc_info=True)
