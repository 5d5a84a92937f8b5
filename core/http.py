"""The client's address, the same way everywhere (audit rows, reveal logs, rate limits, allowlists)."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings


@lru_cache(maxsize=4)
def _networks(entries: tuple[str, ...]) -> tuple:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def client_ip_from(meta: dict) -> str | None:
    """REMOTE_ADDR, or the X-Forwarded-For hop a trusted proxy (TRUSTED_PROXIES) added.

    Walks from the nearest hop back while it is one of our proxies; the first other address is the
    client, so a client cannot claim an address by sending the header itself.
    """
    remote = meta.get("REMOTE_ADDR")
    forwarded = [hop.strip() for hop in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    trusted = _networks(tuple(settings.TRUSTED_PROXIES))
    hops = [*forwarded, remote] if remote else forwarded
    for hop in reversed(hops):
        try:
            if not any(ipaddress.ip_address(hop) in net for net in trusted):
                return hop
        except ValueError:
            return hop
    return hops[0] if hops else None


def client_ip(request) -> str | None:
    """:func:`client_ip_from` for a request."""
    return client_ip_from(request.META)


def ratelimit_ip(request) -> str:
    """The key django-ratelimit counts per client (RATELIMIT_IP_META_KEY); never empty."""
    return client_ip(request) or "unknown"


def storable_text(value) -> str:
    """What a client sent, as a text or JSON column can store it: PostgreSQL takes no NUL character."""
    return str(value).replace("\x00", "\ufffd")
