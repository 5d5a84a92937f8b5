"""The request-signing scheme of the branch API (docs/branch-api.md), shared by both sides."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from urllib.parse import quote

PROTOCOL_VERSION = "1"
HEADER_KEY = "X-Cardmesh-Key"
HEADER_TIMESTAMP = "X-Cardmesh-Timestamp"
HEADER_NONCE = "X-Cardmesh-Nonce"
HEADER_SIGNATURE = "X-Cardmesh-Signature"
MAX_SKEW_SECONDS = 300
MIN_NONCE_LENGTH = 22  # URL-safe base64 characters: 22 × 6 bits >= 128 bits


def sorted_query(pairs: list[tuple[str, str]]) -> str:
    """Query parameters sorted by name then value, RFC 3986 encoded, joined with ``&``."""
    return "&".join(f"{quote(k, safe='-._~')}={quote(v, safe='-._~')}" for k, v in sorted(pairs))


def canonical_request(
    *, method: str, path: str, query: list[tuple[str, str]], timestamp: str, nonce: str, body: bytes
) -> str:
    return "\n".join([method.upper(), path, sorted_query(query), timestamp, nonce, hashlib.sha256(body).hexdigest()])


def signature(secret: str, canonical: str) -> str:
    return hmac.new(secret.encode(), canonical.encode(), hashlib.sha256).hexdigest()


def sign_request(
    *,
    api_key: str,
    signing_secret: str,
    method: str,
    path: str,
    query: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The headers that authenticate one request."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or secrets.token_urlsafe(18)
    canonical = canonical_request(method=method, path=path, query=query or [], timestamp=stamp, nonce=nonce, body=body)
    return {
        HEADER_KEY: api_key,
        HEADER_TIMESTAMP: stamp,
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: signature(signing_secret, canonical),
    }
