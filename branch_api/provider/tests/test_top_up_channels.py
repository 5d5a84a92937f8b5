"""Balance top-ups are paid through Site A's real channels, and a disabled sandbox takes no money at all."""

from decimal import Decimal

import pytest
from django.test import override_settings
from django_tenants.utils import schema_context

from conftest import host_client
from payments.channels import payment_channel_save
from payments.errors import ProviderUnavailable
from payments.models import PaymentAttempt, PaymentChannel
from payments.providers.sandbox import SandboxProvider
from payments.services import payment_callback_handle
from payments.wallet import wallet_balance, wallet_top_up_start

pytestmark = pytest.mark.django_db
TOP_UPS = "/api/branch/v1/top-ups"


def _site_a_epay() -> None:
    with schema_context("public"):
        payment_channel_save(
            channel=PaymentChannel(),
            provider="epay",
            name="Alipay",
            config={"gateway_url": "https://pay.example.test/", "pid": "1001"},
            secret="merchant-key-123",
        )


@override_settings(PAYMENTS_SANDBOX_ENABLED=False)
def test_a_branch_top_up_is_paid_through_site_as_first_real_channel(alpha_api):
    refused = alpha_api.post(TOP_UPS, {"amount": "25.00"}, idempotency_key="top-up-none-1")
    assert (refused.status_code, refused.json()["code"]) == (503, "payment_unavailable")

    _site_a_epay()
    started = alpha_api.post(TOP_UPS, {"amount": "25.00"}, idempotency_key="top-up-epay-1")
    assert started.status_code == 201
    assert started.json()["pay_url"].startswith("https://pay.example.test/submit.php?")
    with schema_context("public"):
        attempt = PaymentAttempt.objects.get(purpose=PaymentAttempt.Purpose.BRANCH_TOP_UP)
        assert (attempt.provider, attempt.amount) == ("epay", Decimal("25.00"))


def test_a_disabled_sandbox_starts_no_payment_and_trusts_no_notification(alpha_api):
    from django.contrib.auth import get_user_model

    with schema_context("alpha"):
        user = get_user_model().objects.create_user(username="w", email="w@example.test", password="x" * 12)
        attempt, url = wallet_top_up_start(user=user, amount="10.00", provider_code="sandbox")
        notification = SandboxProvider().notification(attempt=attempt)
    with override_settings(PAYMENTS_SANDBOX_ENABLED=False):
        with schema_context("alpha"), pytest.raises(ProviderUnavailable):
            wallet_top_up_start(user=user, amount="10.00", provider_code="sandbox")
        assert host_client("alpha.localhost").get(url).status_code == 404
        with schema_context("alpha"):
            assert payment_callback_handle(provider_code="sandbox", data=notification) == (
                False,
                "provider_unavailable",
            )
            assert wallet_balance(user) == Decimal("0.00")
        refused = alpha_api.post(TOP_UPS, {"amount": "25.00"}, idempotency_key="top-up-sbx-1")
        assert refused.status_code == 503
