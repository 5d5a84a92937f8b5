"""The OpenAPI document on Site A describes the signed branch API."""

import pytest

from conftest import host_client

pytestmark = pytest.mark.django_db


def test_site_a_schema_documents_the_branch_api_and_its_signing():
    response = host_client("localhost").get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    document = response.json() if response["Content-Type"].endswith("json") else None
    text = response.content.decode()
    assert "/api/branch/v1/orders" in text and "/api/branch/v1/products" in text
    assert "X-Cardmesh-Signature" in text and "HMAC-SHA256" in text
    assert document is None or "paths" in document


def test_docs_page_is_served_without_a_cdn():
    response = host_client("localhost").get("/api/docs/")
    assert response.status_code == 200
    assert b"cdn." not in response.content and b"unpkg" not in response.content
