"""Malformed requests to the storefront and the payment callbacks get a clear 4xx, never a 500."""

from __future__ import annotations

import pytest
from django.test import override_settings
from django_tenants.utils import schema_context

from conftest import host_client
from payments.models import PaymentCallback


@pytest.mark.parametrize("url", ["/orders/%00/", "/pay/sandbox/a%00b/", "/search/?q=%00", "/c/cards/?page=1%00"])
def test_a_nul_character_in_the_address_is_a_400(alpha, url):
    response = host_client("alpha.localhost").get(url)
    assert response.status_code == 400 and b"NUL" in response.content


@override_settings(ORDER_LOOKUP_RATE="2/m")
def test_a_rate_limited_empty_lookup_is_a_429(alpha):
    client = host_client("alpha.localhost")
    statuses = [client.post("/orders/lookup/", {}).status_code for _ in range(3)]
    assert statuses == [400, 400, 429]


def test_a_multipart_notification_without_fields_is_rejected_not_a_500(alpha):
    response = host_client("localhost").post("/payments/callback/sandbox/", {})  # multipart, no fields
    assert response.status_code < 500


def test_a_notification_with_a_nul_character_is_rejected_and_logged(alpha):
    response = host_client("localhost").post("/payments/callback/sandbox/", {"out_trade_no": "A\x00B", "status": "x"})
    assert response.status_code < 500
    with schema_context("public"):
        logged = PaymentCallback.objects.get(error_code="invalid_payload")
    assert logged.payload["out_trade_no"] == "A\ufffdB" and not logged.accepted


def test_a_stripe_notification_with_a_nul_body_is_rejected_not_a_500(alpha):
    response = host_client("localhost").post(
        "/payments/callback/stripe/", b"\x00", content_type="application/json", HTTP_STRIPE_SIGNATURE="t=1,v1=x"
    )
    assert response.status_code < 500
