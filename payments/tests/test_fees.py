"""Channel fees, limits and currencies: what the checkout offers, what it refuses, what is charged
and how the fee is booked."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django_tenants.utils import schema_context

from conftest import host_client
from ledger.models import Account, Transaction
from ledger.services import ledger_check
from orders.models import Order
from payments.errors import ChannelNotApplicable, ProviderUnavailable
from payments.fees import channel_fee
from payments.models import PaymentAttempt, PaymentChannel
from payments.providers.sandbox import SandboxProvider
from payments.selectors import checkout_channels
from payments.services import payment_callback_handle, payment_start
from tests.commerce import place, product_with_codes

pytestmark = pytest.mark.django_db
D = Decimal


def _channel(provider: str, name: str, **terms) -> PaymentChannel:
    return PaymentChannel.objects.create(provider=provider, name=name, is_enabled=True, **terms)


def _balance(code: str) -> Decimal:
    account = Account.objects.filter(code=code).first()
    return account.natural_balance if account else D("0.00")


def _buy_form(variant, payment: str) -> dict:
    return {
        "variant": variant.pk,
        "quantity": 1,
        "expected_price": str(variant.price),
        "email": "fees@example.test",
        "lookup_password": "lookup-123",
        "payment": payment,
    }


def test_the_fee_is_rounded_half_up_once():
    channel = PaymentChannel(fee_percent=D("2.50"), fee_fixed=D("0.30"))
    # 14.60 × 2.5 % = 0.365, + 0.30 = 0.665: half-up gives 0.67 (half-even would give 0.66).
    assert channel_fee(channel, D("14.60")) == D("0.67")
    assert channel_fee(PaymentChannel(fee_percent=D("0"), fee_fixed=D("0")), D("99.99")) == D("0.00")


def test_checkout_lists_only_the_channels_that_take_the_amount_and_currency():
    with schema_context("alpha"):
        _channel("epay", "Alipay", min_amount=D("20.00"), currencies="USD, CNY")
        _channel("stripe", "Card", max_amount=D("10.00"))
        assert [code for code, _ in checkout_channels(amount=D("25.00"), currency="USD")] == ["sandbox", "epay"]
        assert [code for code, _ in checkout_channels(amount=D("5.00"), currency="USD")] == ["sandbox", "stripe"]
        assert [code for code, _ in checkout_channels(amount=D("25.00"), currency="EUR")] == ["sandbox"]
        # A range (a product page, before the quantity is chosen): both take some purchase of 5 … 25.
        ranged = checkout_channels(amount=D("5.00"), amount_up_to=D("25.00"), currency="USD")
        assert [code for code, _ in ranged] == ["sandbox", "epay", "stripe"]


def test_a_disabled_sandbox_row_removes_the_sandbox_and_its_name_is_used_otherwise():
    with schema_context("alpha"):
        row = _channel("sandbox", "Test money", fee_percent=D("1"), fee_payer=PaymentChannel.FeePayer.CUSTOMER)
        assert checkout_channels() == [("sandbox", "Test money (fee 1%)")]
        PaymentChannel.objects.filter(pk=row.pk).update(is_enabled=False)
        assert checkout_channels() == []


def test_a_customer_cannot_force_a_channel_that_does_not_take_the_total(alpha):
    with schema_context("alpha"):
        variant = product_with_codes(codes=2, price="15.00")
        _channel("sandbox", "Sandbox", max_amount=D("10.00"))
        orders_before = Order.objects.count()
    client = host_client("alpha.localhost")
    page = client.get(f"/p/{variant.product.slug}/").content.decode()
    assert 'value="sandbox"' not in page  # 15 × 1 … 15 × 20 is all above its maximum

    refused = client.post(f"/p/{variant.product.slug}/buy/", _buy_form(variant, "sandbox"))
    assert refused.status_code == 400
    with schema_context("alpha"):
        assert Order.objects.count() == orders_before  # refused before anything was reserved
        order = place(variant, 1)
        with pytest.raises(ChannelNotApplicable) as refused_start:
            payment_start(order=order, provider_code="sandbox")
        assert refused_start.value.code == "channel_not_applicable"
        assert "up to 10.00" in refused_start.value.message
        with pytest.raises(ProviderUnavailable):
            payment_start(order=order, provider_code="epay")  # not configured in this shop
        assert not PaymentAttempt.objects.filter(order=order).exists()


def test_a_customer_paid_fee_is_charged_on_top_and_booked_as_fee_income(alpha):
    with schema_context("alpha"):
        variant = product_with_codes(codes=2, price="14.60", cost="10.00")
        _channel(
            "sandbox", "Sandbox", fee_percent=D("2.50"), fee_fixed=D("0.30"), fee_payer=PaymentChannel.FeePayer.CUSTOMER
        )
        order = place(variant, 1)
        attempt, url = payment_start(order=order, provider_code="sandbox")
        assert (attempt.amount, attempt.fee, attempt.goods_amount) == (D("15.27"), D("0.67"), D("14.60"))

        short = SandboxProvider().notification(attempt=attempt)
        short["amount"] = "14.60"  # the goods total alone is not what this attempt asked for
        from payments.providers.sandbox import sandbox_sign

        short["signature"] = sandbox_sign(short)
        assert payment_callback_handle(provider_code="sandbox", data=short) == (False, "amount_mismatch")

    page = host_client("alpha.localhost").get(url).content.decode()
    assert 'data-testid="surcharge"' in page and "0.67" in page and "15.27" in page

    with schema_context("alpha"):
        notification = SandboxProvider().notification(attempt=attempt)
        assert payment_callback_handle(provider_code="sandbox", data=notification) == (True, "ok")
        assert payment_callback_handle(provider_code="sandbox", data=notification) == (True, "ok")  # once only
        order.refresh_from_db()
        assert (order.status, order.total) == (Order.Status.DELIVERED, D("14.60"))
        assert _balance("payment_clearing") == D("15.27")
        assert _balance("sales_revenue") == D("14.60")
        assert _balance("payment_fee_income") == D("0.67")
        assert Transaction.objects.filter(kind="payment_fee").count() == 1
        assert ledger_check() == []


def test_a_fee_the_shop_absorbs_is_booked_as_an_expense_when_paid(alpha):
    with schema_context("alpha"):
        variant = product_with_codes(codes=2, price="14.60", cost="10.00")
        _channel("sandbox", "Sandbox", fee_percent=D("2.50"), fee_fixed=D("0.30"))
        order = place(variant, 1)
        attempt, _url = payment_start(order=order, provider_code="sandbox")
        assert (attempt.amount, attempt.fee, attempt.fee_payer) == (D("14.60"), D("0.67"), "shop")
        assert not Transaction.objects.filter(kind="payment_fee").exists()  # booked when paid, not before
        notification = SandboxProvider().notification(attempt=attempt)
        assert payment_callback_handle(provider_code="sandbox", data=notification) == (True, "ok")
        assert _balance("payment_fees") == D("0.67")
        assert _balance("payment_clearing") == D("13.93")  # the gateway keeps its fee
        assert _balance("sales_revenue") == D("14.60")
        assert ledger_check() == []


def _admin_form(**overrides) -> dict:
    return {
        "provider": "epay",
        "name": "Alipay",
        "is_enabled": "on",
        "sort_order": "1",
        "fee_percent": "1.5",
        "fee_fixed": "0.10",
        "fee_payer": "customer",
        "min_amount": "1.00",
        "max_amount": "500.00",
        "currencies": "usd, cny, USD",
        "config": '{"gateway_url": "https://pay.example.test/", "pid": "1001"}',
        "secret": "merchant-key",
        **overrides,
    }


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"min_amount": "50", "max_amount": "10"}, "max_amount"),
        ({"fee_percent": "-1"}, "fee_percent"),
        ({"fee_fixed": "-0.01"}, "fee_fixed"),
        ({"currencies": "USD, DOLLARS"}, "currencies"),
        ({"currencies": "U1D"}, "currencies"),
    ],
)
def test_admin_refuses_inconsistent_fees_limits_and_currencies(staff_client, overrides, field):
    response = staff_client.post("/admin/payments/paymentchannel/add/", _admin_form(**overrides))
    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    with schema_context("alpha"):
        assert not PaymentChannel.objects.exists()


def test_admin_saves_fees_limits_and_normalised_currencies(staff_client):
    response = staff_client.post("/admin/payments/paymentchannel/add/", _admin_form())
    assert response.status_code == 302
    with schema_context("alpha"):
        channel = PaymentChannel.objects.get()
    assert (channel.fee_percent, channel.fee_fixed, channel.fee_payer) == (D("1.50"), D("0.10"), "customer")
    assert (channel.min_amount, channel.max_amount, channel.currencies) == (D("1.00"), D("500.00"), "USD, CNY")


def test_the_product_page_names_the_fee_the_customer_pays(alpha):
    with schema_context("alpha"):
        variant = product_with_codes(codes=2, price="15.00")
        customer = PaymentChannel.FeePayer.CUSTOMER
        _channel("sandbox", "Test card", fee_percent=D("2.50"), fee_fixed=D("0.30"), fee_payer=customer)
    page = host_client("alpha.localhost").get(f"/p/{variant.product.slug}/").content.decode()
    assert "Test card (fee 2.5% + 0.30)" in page


def test_a_wallet_top_up_is_credited_without_the_surcharge():
    from django.contrib.auth import get_user_model

    from payments.wallet import wallet_balance, wallet_top_up_start

    with schema_context("alpha"):
        user = get_user_model().objects.create_user(username="fee-payer", email="fee@example.test", password="x" * 12)
        _channel("sandbox", "Sandbox", fee_percent=D("1"), fee_payer=PaymentChannel.FeePayer.CUSTOMER)
        attempt, _url = wallet_top_up_start(user=user, amount="10.00", provider_code="sandbox")
        assert attempt.amount == D("10.10")
        notification = SandboxProvider().notification(attempt=attempt)
        assert payment_callback_handle(provider_code="sandbox", data=notification) == (True, "ok")
        assert wallet_balance(user) == D("10.00")
        assert (_balance("payment_clearing"), _balance("payment_fee_income")) == (D("10.10"), D("0.10"))
        assert ledger_check() == []
