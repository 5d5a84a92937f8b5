"""HTTP client of Site A's branch API (docs/branch-api.md): signed requests, typed errors.

Never call it inside a database transaction: no network I/O may hold row locks, and an in-process
Site A (tests) would otherwise run inside the caller's transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
from django.db import connection as db_connection
from django.urls import get_urlconf, set_urlconf
from django.utils import translation
from django_tenants.utils import schema_context

from branch_api import signing
from branch_api.upstream.credentials import connection_credentials
from branch_api.upstream.errors import UpstreamRefused, UpstreamUnavailable
from branch_api.upstream.models import UpstreamConnection

API_PREFIX = "/api/branch/v1/"
TIMEOUT = httpx.Timeout(15.0, connect=5.0)
USER_AGENT = f"cardmesh-branch/{signing.PROTOCOL_VERSION}"

# The transport every client uses unless given one: None is real HTTP. Tests point it at Site A
# in-process: ``httpx.WSGITransport(app=django.core.wsgi.get_wsgi_application())``.
DEFAULT_TRANSPORT: httpx.BaseTransport | None = None


@dataclass(frozen=True)
class ApiAnswer:
    status: int
    data: dict
    replayed: bool  # Site A answered from its idempotency store (the first answer, again)


class UpstreamClient:
    """One connection's view of Site A. Each call signs a fresh request and returns the JSON body."""

    def __init__(self, connection: UpstreamConnection, *, transport: httpx.BaseTransport | None = None):
        self.base_url = connection.base_url.rstrip("/")
        self.host_header = connection.host_header.strip()
        self.api_key, self.signing_secret = connection_credentials(connection)
        self.transport = transport if transport is not None else DEFAULT_TRANSPORT

    # --- Endpoints ------------------------------------------------------------------------------

    def ping(self) -> dict:
        return self.get("ping")

    def categories(self) -> list[dict]:
        return self.get("categories")["results"]

    def products(self, *, page: int, page_size: int) -> dict:
        return self.get("products", params=[("page", str(page)), ("page_size", str(page_size))])

    def changes(self, *, since: str) -> dict:
        return self.get("changes", params=[("since", since)] if since else [])

    def balance(self) -> dict:
        return self.get("balance")

    def order_create(
        self, *, reference: str, items: list[dict], expected_total: Decimal | None, idempotency_key: str
    ) -> ApiAnswer:
        body: dict[str, Any] = {"reference": reference, "items": items}
        if expected_total is not None:
            body["expected_total"] = str(expected_total)
        return self.request("POST", "orders", body=body, idempotency_key=idempotency_key)

    def top_up_create(self, *, amount: Decimal, return_url: str, idempotency_key: str) -> ApiAnswer:
        body = {"amount": str(amount), "return_url": return_url}
        return self.request("POST", "top-ups", body=body, idempotency_key=idempotency_key)

    def order_get(self, *, reference: str) -> dict:
        return self.get(f"orders/{reference}")

    # --- Transport --------------------------------------------------------------------------------

    def get(self, endpoint: str, *, params: list[tuple[str, str]] | None = None) -> dict:
        return self.request("GET", endpoint, params=params).data

    def request(
        self,
        method: str,
        endpoint: str,
        *,
        params: list[tuple[str, str]] | None = None,
        body: dict | None = None,
        idempotency_key: str = "",
    ) -> ApiAnswer:
        """Send one signed request; raise ``UpstreamUnavailable`` (retry later) or ``UpstreamRefused``."""
        if db_connection.in_atomic_block:
            raise RuntimeError("Site A must not be called inside a database transaction.")
        params = params or []
        raw_body = json.dumps(body, separators=(",", ":")).encode() if body is not None else b""
        url = httpx.URL(f"{self.base_url}{API_PREFIX}{endpoint}", params=params)
        headers = signing.sign_request(
            api_key=self.api_key,
            signing_secret=self.signing_secret,
            method=method,
            path=url.path,
            query=params,
            body=raw_body,
        )
        headers["Accept"] = "application/json"
        headers["User-Agent"] = USER_AGENT
        if body is not None:
            headers["Content-Type"] = "application/json"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        if self.host_header:
            headers["Host"] = self.host_header
        response = self._send(method, url, headers=headers, content=raw_body)
        return _answer(response)

    def _send(self, method: str, url: httpx.URL, *, headers: dict, content: bytes) -> httpx.Response:
        # An in-process Site A runs Django's request cycle on this thread: its middleware switches the
        # database connection to the public schema and sets the URLconf and language. Put them back.
        urlconf, language = get_urlconf(), translation.get_language()
        try:
            with schema_context(db_connection.schema_name or "public"):
                with httpx.Client(transport=self.transport, timeout=TIMEOUT, follow_redirects=False) as http:
                    response = http.request(method, url, headers=headers, content=content)
                    response.read()
                    return response
        except httpx.TimeoutException as exc:
            raise UpstreamUnavailable(f"Site A did not answer in time ({type(exc).__name__}).", code="timeout") from exc
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(f"Site A could not be reached: {exc}"[:255], code="unreachable") from exc
        finally:
            set_urlconf(urlconf)
            if language:
                translation.activate(language)


def _answer(response: httpx.Response) -> ApiAnswer:
    try:
        data = response.json()
    except ValueError:
        data = None
    status = response.status_code
    if status >= 500:
        code = data.get("code") if isinstance(data, dict) else None
        raise UpstreamUnavailable(f"Site A answered {status}.", code=code or "server_error", status=status)
    if 300 <= status < 400:
        raise UpstreamRefused(f"Site A redirected ({status}): check the URL.", code="redirected", status=status)
    if status >= 400:
        if isinstance(data, dict) and data.get("code"):
            message = str(data.get("message") or f"Site A answered {status}.")
            raise UpstreamRefused(message[:255], code=str(data["code"])[:48], status=status)
        # An HTML error page or a proxy's answer: not Site A's API (wrong URL?).
        raise UpstreamRefused(
            f"Site A answered {status} without the API's error body.", code="http_error", status=status
        )
    if not isinstance(data, dict):
        # A 2xx that is not the API's JSON: a broken hop in between; the request may be repeated.
        raise UpstreamUnavailable(
            f"Site A's answer ({status}) is not the API's JSON.", code="bad_response", status=status
        )
    return ApiAnswer(status=status, data=data, replayed=response.headers.get("Idempotent-Replayed") == "true")
