"""Calling Site A's branch API from tests with real signed requests."""

from __future__ import annotations

import json
from decimal import Decimal
from urllib.parse import parse_qsl, urlsplit

import pytest
from django_tenants.utils import schema_context

from branch_api.signing import sign_request
from conftest import host_client


class SignedClient:
    """A Django test client that signs each request like a branch would."""

    def __init__(self, api_key: str, signing_secret: str, *, remote_addr: str = "127.0.0.1"):
        self.api_key, self.signing_secret = api_key, signing_secret
        self.client = host_client("localhost")
        self.remote_addr = remote_addr

    def headers(self, method: str, url: str, body: bytes = b"", **overrides) -> dict:
        parts = urlsplit(url)
        signed = sign_request(
            api_key=self.api_key,
            signing_secret=self.signing_secret,
            method=method,
            path=parts.path,
            query=parse_qsl(parts.query, keep_blank_values=True),
            body=body,
        )
        signed.update(overrides)
        return {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in signed.items()}

    def get(self, url: str, **overrides):
        return self.client.get(url, REMOTE_ADDR=self.remote_addr, **self.headers("GET", url, **overrides))

    def post(self, url: str, payload: dict, *, idempotency_key: str | None = "key-00000001", **overrides):
        body = json.dumps(payload).encode()
        extra = self.headers("POST", url, body, **overrides)
        if idempotency_key is not None:
            extra["HTTP_IDEMPOTENCY_KEY"] = idempotency_key
        return self.client.post(url, body, content_type="application/json", REMOTE_ADDR=self.remote_addr, **extra)


def signed_client_for(slug: str, **kwargs) -> SignedClient:
    from branch_api.provider.services import credential_issue
    from tenants.models import Branch

    with schema_context("public"):
        issued = credential_issue(branch=Branch.objects.get(slug=slug))
    return SignedClient(issued.api_key, issued.signing_secret, **kwargs)


@pytest.fixture
def alpha_api(db) -> SignedClient:
    return signed_client_for("alpha")


@pytest.fixture
def beta_api(db) -> SignedClient:
    return signed_client_for("beta")


def site_a_product(*, codes: int = 5, cost: str = "10.00", price: str = "12.00", visible_to=("alpha",)):
    """A product on Site A visible to the given branches; returns its variant."""
    from branch_api.provider.services import terms_ensure
    from tenants.models import Branch
    from tests.commerce import product_with_codes

    with schema_context("public"):
        variant = product_with_codes(codes=codes, cost=cost, price=price)
        for slug in visible_to:
            terms_ensure(Branch.objects.get(slug=slug)).visible_products.add(variant.product)
    return variant


def top_up(slug: str, amount: str) -> None:
    from branch_api.provider.services import branch_top_up
    from tenants.models import Branch

    with schema_context("public"):
        branch_top_up(
            branch=Branch.objects.get(slug=slug),
            amount=Decimal(amount),
            reference="test",
            idempotency_key=f"test-top-up-{slug}-{amount}-{id(object())}",
        )
