"""Payment attempts and callbacks are visible to a shop's staff and cannot be altered from the admin."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django_tenants.utils import schema_context

from catalog.models import Category, Product, Variant
from orders.services import CartItem, order_place
from payments.models import PaymentAttempt, PaymentCallback

pytestmark = pytest.mark.django_db


@pytest.fixture
def attempt() -> PaymentAttempt:
    with schema_context("alpha"):
        category = Category.objects.create(name="Games", slug="games")
        product = Product.objects.create(
            category=category, name="Top up", slug="top-up", delivery_mode=Product.DeliveryMode.MANUAL
        )
        variant = Variant.objects.create(product=product, sku="TOP-1", name="100", price=Decimal("5.00"))
        order = order_place(items=[CartItem(variant_id=variant.pk, quantity=1)], email="buyer@example.test")
        attempt = PaymentAttempt.objects.create(
            order=order, provider="sandbox", token="tok-visible-123", amount=order.total, currency=order.currency
        )
        PaymentCallback.objects.create(provider="sandbox", attempt=attempt, payload={"token": attempt.token})
        return attempt


def test_payment_attempts_and_callbacks_are_listed_read_only(staff_client, attempt):
    attempts = staff_client.get("/admin/payments/paymentattempt/")
    assert attempts.status_code == 200
    assert attempt.order.number in attempts.content.decode()
    with schema_context("alpha"):
        callback = PaymentCallback.objects.get()
    assert staff_client.get(f"/admin/payments/paymentcallback/{callback.pk}/change/").status_code == 200

    for url in ("/admin/payments/paymentattempt/add/", "/admin/payments/paymentcallback/add/"):
        assert staff_client.get(url).status_code == 403
    change = f"/admin/payments/paymentattempt/{attempt.pk}/change/"
    assert staff_client.post(change, {"status": "succeeded", "amount": "0.01"}).status_code == 403
    assert staff_client.post(f"/admin/payments/paymentattempt/{attempt.pk}/delete/", {"post": "yes"}).status_code == 403
    with schema_context("alpha"):
        attempt.refresh_from_db()
    assert (attempt.status, attempt.amount) == (PaymentAttempt.Status.CREATED, Decimal("5.00"))


def test_payment_channel_secret_is_write_only_and_kept_when_left_empty(staff_client):
    from payments.channels import channel_secret
    from payments.models import PaymentChannel

    form = {
        "provider": "epay",
        "name": "Alipay",
        "is_enabled": "on",
        "sort_order": "1",
        "config": '{"gateway_url": "https://pay.example.test/", "pid": "1001"}',
        "secret": "first-secret-value",
    }
    assert staff_client.post("/admin/payments/paymentchannel/add/", form).status_code == 302
    with schema_context("alpha"):
        channel = PaymentChannel.objects.get()
        assert channel_secret(channel) == "first-secret-value"
        assert "first-secret-value" not in channel.secret_encrypted
    change = f"/admin/payments/paymentchannel/{channel.pk}/change/"
    page = staff_client.get(change)
    assert page.status_code == 200 and "first-secret-value" not in page.content.decode()

    edited = {**form, "name": "Alipay (epay)", "secret": "", "provider": "sandbox"}
    assert staff_client.post(change, edited).status_code == 302
    with schema_context("alpha"):
        channel.refresh_from_db()
        assert (channel.name, channel.provider) == ("Alipay (epay)", "epay")  # provider is fixed once created
        assert channel_secret(channel) == "first-secret-value"
    assert staff_client.post(change, {**form, "secret": "second-secret"}).status_code == 302
    with schema_context("alpha"):
        channel.refresh_from_db()
        assert channel_secret(channel) == "second-secret"


@pytest.mark.parametrize(
    ("provider", "config", "secret", "field", "message"),
    [
        ("stripe", "{}", "sk_test_not_json", "secret", "Paste the JSON"),
        ("stripe", "{}", '{"secret_key": "pk_test_1", "webhook_secret": "whsec_1"}', "secret", "sk_"),
        ("stripe", "{}", '{"secret_key": "sk_test_1", "webhook_secret": "1"}', "secret", "whsec_"),
        ("stripe", '{"payment_method_types": "card"}', "", "config", "payment_method_types"),
        ("epay", '{"pid": "1001"}', "merchant-key-1", "config", "gateway_url"),
        ("epay", '{"gateway_url": "https://pay.example.test/"}', "merchant-key-1", "config", "pid"),
    ],
)
def test_a_channel_with_malformed_settings_or_secret_is_refused_with_the_reason(
    staff_client, provider, config, secret, field, message
):
    from payments.models import PaymentChannel

    form = {"provider": provider, "name": "Pay", "is_enabled": "on", "sort_order": "1", "config": config}
    response = staff_client.post("/admin/payments/paymentchannel/add/", {**form, "secret": secret})
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert field in errors and message in " ".join(errors[field])
    with schema_context("alpha"):
        assert not PaymentChannel.objects.exists()


def test_a_well_formed_stripe_channel_is_saved(staff_client):
    from payments.channels import channel_secret_fields
    from payments.models import PaymentChannel

    secret = '{"secret_key": "sk_test_123", "webhook_secret": "whsec_abc"}'
    form = {"provider": "stripe", "name": "Card", "is_enabled": "on", "sort_order": "1", "config": "{}"}
    assert staff_client.post("/admin/payments/paymentchannel/add/", {**form, "secret": secret}).status_code == 302
    with schema_context("alpha"):
        assert channel_secret_fields(PaymentChannel.objects.get()) == {
            "secret_key": "sk_test_123",
            "webhook_secret": "whsec_abc",
        }


def test_top_up_attempts_are_listed_with_what_they_pay_for(staff_client):
    with schema_context("alpha"):
        PaymentAttempt.objects.create(
            purpose=PaymentAttempt.Purpose.WALLET_TOP_UP,
            subject_id=42,
            provider="sandbox",
            token="tok-top-up-1",
            amount=Decimal("20.00"),
            currency="USD",
        )
    page = staff_client.get("/admin/payments/paymentattempt/")
    assert page.status_code == 200 and "Customer wallet top-up #42" in page.content.decode()
