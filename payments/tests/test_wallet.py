"""Customer wallets: top-ups credit once, orders paid from the wallet, never overdrawn (even concurrently)."""

import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django_tenants.utils import schema_context

from conftest import host_client
from ledger.models import Account, Transaction
from ledger.services import ledger_check
from orders.errors import OrderNotPayable
from orders.models import Order
from payments.models import PaymentAttempt
from payments.providers.sandbox import SandboxProvider
from payments.services import payment_callback_handle
from payments.wallet import (
    InsufficientWalletBalance,
    WalletNotAllowed,
    wallet_balance,
    wallet_pay,
    wallet_top_up_start,
)
from tests.commerce import place, product_with_codes

PASSWORD = "Customer-Pass-1"


def _customer(name: str | None = None):
    name = name or f"c-{uuid.uuid4().hex[:10]}"
    return get_user_model().objects.create_user(username=name, email=f"{name}@example.test", password=PASSWORD)


def _top_up(user, amount: str) -> PaymentAttempt:
    attempt, _url = wallet_top_up_start(user=user, amount=Decimal(amount), provider_code="sandbox")
    assert payment_callback_handle(provider_code="sandbox", data=SandboxProvider().notification(attempt=attempt)) == (
        True,
        "ok",
    )
    return attempt


def _paid_from(user) -> Decimal:
    """Total debited from the wallet for orders."""
    account = Account.objects.get(code=f"wallet:{user.pk}")
    return sum(account.entries.filter(transaction__kind="order_payment").values_list("amount", flat=True), Decimal(0))


@pytest.mark.django_db
def test_a_sandbox_top_up_credits_the_wallet_once():
    with schema_context("alpha"):
        user = _customer()
        assert wallet_balance(user) == Decimal("0.00")
        attempt, url = wallet_top_up_start(user=user, amount="25.50", provider_code="sandbox")
        assert attempt.purpose == PaymentAttempt.Purpose.WALLET_TOP_UP and attempt.subject_id == user.pk
        assert url == f"/pay/sandbox/{attempt.token}/"
        notification = SandboxProvider().notification(attempt=attempt)
        for _ in range(3):  # the gateway retries: applied once
            assert payment_callback_handle(provider_code="sandbox", data=notification) == (True, "ok")
        assert wallet_balance(user) == Decimal("25.50")
        account = Account.objects.get(code=f"wallet:{user.pk}")
        assert (account.kind, account.may_go_negative, account.owner_type) == ("liability", False, "user")
        assert Transaction.objects.filter(idempotency_key=f"wallet-top-up:{attempt.pk}").count() == 1
        assert ledger_check() == []


@pytest.mark.django_db
def test_a_wallet_top_up_must_be_a_positive_amount_of_a_logged_in_customer():
    from django.contrib.auth.models import AnonymousUser

    from core.errors import DomainError

    with schema_context("alpha"):
        user = _customer()
        for amount in ("0", "-5", "abc", "1000000"):
            with pytest.raises(DomainError):
                wallet_top_up_start(user=user, amount=amount, provider_code="sandbox")
        with pytest.raises(WalletNotAllowed):
            wallet_top_up_start(user=AnonymousUser(), amount="5", provider_code="sandbox")
        assert not PaymentAttempt.objects.filter(purpose="wallet_top_up").exists()


@pytest.mark.django_db
def test_paying_an_order_from_the_wallet_delivers_it_and_debits_exactly_the_total(django_capture_on_commit_callbacks):
    with schema_context("alpha"), django_capture_on_commit_callbacks(execute=False):
        user = _customer()
        _top_up(user, "50.00")
        order = place(product_with_codes(codes=3, price="15.00"), 2, customer=user)
        paid = wallet_pay(order=order, user=user)
        assert paid.status == Order.Status.DELIVERED and paid.payment_provider == "balance"
        assert order.lines.get().assignments.count() == 2
        assert wallet_balance(user) == Decimal("20.00")
        assert _paid_from(user) == Decimal("30.00")
        # Paying again changes nothing.
        with pytest.raises(OrderNotPayable):
            wallet_pay(order=order, user=user)
        assert wallet_balance(user) == Decimal("20.00")
        assert ledger_check() == []


@pytest.mark.django_db
def test_an_insufficient_wallet_is_refused_and_changes_nothing(django_capture_on_commit_callbacks):
    with schema_context("alpha"), django_capture_on_commit_callbacks(execute=False):
        user = _customer()
        _top_up(user, "10.00")
        order = place(product_with_codes(codes=3, price="15.00"), 1, customer=user)
        with pytest.raises(InsufficientWalletBalance) as exc:
            wallet_pay(order=order, user=user)
        assert exc.value.message == "insufficient wallet balance"
        order.refresh_from_db()
        assert order.status == Order.Status.PENDING_PAYMENT and order.paid_at is None
        assert wallet_balance(user) == Decimal("10.00")
        assert not Transaction.objects.filter(idempotency_key=f"order-paid:{order.number}").exists()
        assert order.lines.get().assignments.count() == 0
        assert ledger_check() == []


@pytest.mark.django_db
def test_another_customer_cannot_pay_my_order_from_their_wallet(django_capture_on_commit_callbacks):
    from django.contrib.auth.models import AnonymousUser

    with schema_context("alpha"), django_capture_on_commit_callbacks(execute=False):
        me, other = _customer(), _customer()
        _top_up(other, "100.00")
        mine = place(product_with_codes(codes=2, price="15.00"), 1, customer=me)
        guest_order = place(product_with_codes(codes=2, price="15.00"), 1)
        for order in (mine, guest_order):
            with pytest.raises(WalletNotAllowed):
                wallet_pay(order=order, user=other)
        with pytest.raises(WalletNotAllowed):
            wallet_pay(order=mine, user=AnonymousUser())
        mine.refresh_from_db()
        assert mine.status == Order.Status.PENDING_PAYMENT
        assert wallet_balance(other) == Decimal("100.00")


def _in_thread(schema, fn, *args):
    try:
        with schema_context(schema):
            return fn(*args)
    finally:
        connection.close()


def test_a_wallet_never_goes_negative_under_concurrent_spending(live_db):
    with schema_context("beta"):
        user = _customer()
        _top_up(user, "50.00")
        variant = product_with_codes(codes=10, price="10.00")
        orders = [place(variant, 1, customer=user) for _ in range(10)]

    def spend(order):
        try:
            return wallet_pay(order=order, user=user).status
        except InsufficientWalletBalance as exc:
            return exc.code

    with ThreadPoolExecutor(max_workers=10) as pool:
        outcomes = list(pool.map(lambda o: _in_thread("beta", spend, o), orders))
    assert outcomes.count(Order.Status.DELIVERED) == 5, outcomes
    assert outcomes.count("insufficient_wallet_balance") == 5, outcomes
    with schema_context("beta"):
        ids = [o.pk for o in orders]
        assert Order.objects.filter(pk__in=ids, status=Order.Status.DELIVERED).count() == 5
        assert Order.objects.filter(pk__in=ids, status=Order.Status.PENDING_PAYMENT).count() == 5
        assert wallet_balance(user) == Decimal("0.00")
        assert _paid_from(user) == Decimal("50.00")
        assert ledger_check() == []


@pytest.mark.django_db
def test_the_wallet_page_tops_up_through_the_sandbox_and_checkout_offers_the_wallet(
    django_capture_on_commit_callbacks,
):
    with schema_context("alpha"):
        user = _customer()
        variant = product_with_codes(codes=3, price="15.00")
    client = host_client("alpha.localhost")
    assert client.get("/account/wallet/").status_code == 302  # customers only
    client.post("/accounts/login/", {"login": user.email, "password": PASSWORD})
    page = client.get("/account/wallet/")
    assert page.status_code == 200 and 'data-testid="wallet-balance">0.00' in page.content.decode()
    assert 'data-testid="nav-wallet"' in page.content.decode()

    gateway = client.post("/account/wallet/", {"amount": "40.00"})
    assert gateway.status_code == 302 and gateway["Location"].startswith("/pay/sandbox/")
    assert b"40.00" in client.get(gateway["Location"]).content
    with django_capture_on_commit_callbacks(execute=False):
        back = client.post(gateway["Location"], {"action": "pay"})
    assert back.status_code == 302 and back["Location"] == "/account/wallet/"
    page = client.get("/account/wallet/").content.decode()
    assert 'data-testid="wallet-balance">40.00' in page and "+40.00" in page

    product_page = client.get(f"/p/{variant.product.slug}/").content.decode()
    assert 'value="balance"' in product_page and "Wallet balance (40.00 available)" in product_page
    data = {"variant": variant.pk, "quantity": 2, "email": user.email, "payment": "balance"}
    with django_capture_on_commit_callbacks(execute=False):
        refused = client.post(f"/p/{variant.product.slug}/buy/", {**data, "quantity": 3})  # 45.00 > 40.00
    assert refused.status_code == 400 and "insufficient wallet balance" in refused.content.decode()
    with schema_context("alpha"):
        assert not Order.objects.filter(customer=user).exists()  # nothing left behind
    with django_capture_on_commit_callbacks(execute=False):
        bought = client.post(f"/p/{variant.product.slug}/buy/", data)
    assert bought.status_code == 302 and bought["Location"].startswith("/orders/")
    with schema_context("alpha"):
        order = Order.objects.get(customer=user)
        assert bought["Location"] == f"/orders/{order.number}/"
        assert order.status == Order.Status.DELIVERED and order.payment_provider == "balance"
        assert wallet_balance(user) == Decimal("10.00")


@pytest.mark.django_db
def test_an_unpaid_order_can_be_paid_again_from_the_wallet_on_its_page(django_capture_on_commit_callbacks):
    with schema_context("alpha"):
        user = _customer()
        variant = product_with_codes(codes=3, price="15.00")
        _top_up(user, "20.00")
    client = host_client("alpha.localhost")
    client.post("/accounts/login/", {"login": user.email, "password": PASSWORD})
    data = {"variant": variant.pk, "quantity": 1, "email": user.email, "payment": "sandbox"}
    assert client.post(f"/p/{variant.product.slug}/buy/", data)["Location"].startswith("/pay/sandbox/")
    with schema_context("alpha"):
        order = Order.objects.get(customer=user)
    page = client.get(f"/orders/{order.number}/").content.decode()
    assert 'data-testid="pay-channel"' in page and 'value="balance"' in page

    refused = client.post(f"/orders/{order.number}/pay/", {"payment": "epay"}, follow=True)  # not offered here
    assert "not available for this order" in refused.content.decode()
    with django_capture_on_commit_callbacks(execute=False):
        paid = client.post(f"/orders/{order.number}/pay/", {"payment": "balance"})
    assert paid.status_code == 302 and paid["Location"] == f"/orders/{order.number}/"
    with schema_context("alpha"):
        order.refresh_from_db()
        assert order.status == Order.Status.DELIVERED and order.payment_provider == "balance"
        assert wallet_balance(user) == Decimal("5.00")
        assert ledger_check() == []
