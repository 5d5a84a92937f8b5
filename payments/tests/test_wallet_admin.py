"""Staff see every customer's wallet and its movements, and adjust it with a reason, never below zero."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django_tenants.utils import schema_context

from ledger.models import Transaction
from ledger.services import ledger_check
from payments.models import CustomerWallet
from payments.tests.test_wallet import _customer, _top_up
from payments.wallet import wallet_balance

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer():
    with schema_context("alpha"):
        user = _customer("wallet-holder")
        _top_up(user, "12.50")
        return user


def _adjust_url(user) -> str:
    with schema_context("alpha"):
        wallet = CustomerWallet.objects.get(owner_id=str(user.pk))
    return f"/admin/payments/customerwallet/{wallet.pk}/adjust/"


def _request_key(page) -> str:
    return re.search(r'name="request_key" value="([0-9a-f]+)"', page.content.decode()).group(1)


def test_wallets_are_listed_with_their_customer_and_balance(staff_client, customer):
    listing = staff_client.get("/admin/payments/customerwallet/")
    assert listing.status_code == 200
    assert "wallet-holder@example.test" in listing.content.decode() and "12.50" in listing.content.decode()
    assert "wallet-holder" in staff_client.get("/admin/payments/customerwallet/?q=holder@").content.decode()
    assert "wallet-holder" not in staff_client.get("/admin/payments/customerwallet/?q=nobody").content.decode()
    page = staff_client.get(_adjust_url(customer))
    assert page.status_code == 200 and 'data-testid="wallet-balance">12.50' in page.content.decode()
    assert "+12.50" in page.content.decode()  # the top-up, from the customer's side


def test_an_adjustment_moves_the_wallet_once_with_the_reason_on_record(staff_client, customer):
    url = _adjust_url(customer)
    key = _request_key(staff_client.get(url))
    form = {"amount": "7.50", "reason": "Goodwill for a slow delivery", "request_key": key}
    assert staff_client.post(url, form).status_code == 302
    assert staff_client.post(url, form).status_code == 302  # the same form sent twice
    with schema_context("alpha"):
        assert wallet_balance(customer) == Decimal("20.00")
        adjustment = Transaction.objects.get(kind="adjustment")
        assert "Goodwill for a slow delivery" in adjustment.memo and "owner@alpha.test" in adjustment.memo
        assert ledger_check() == []


def test_a_debit_beyond_the_balance_or_without_a_reason_changes_nothing(staff_client, customer):
    url = _adjust_url(customer)
    too_much = {"amount": "-12.51", "reason": "Payout to bank", "request_key": _request_key(staff_client.get(url))}
    refused = staff_client.post(url, too_much, follow=True)
    assert "holds less than that" in refused.content.decode()
    no_reason = {"amount": "-1.00", "reason": "x", "request_key": _request_key(staff_client.get(url))}
    assert staff_client.post(url, no_reason).status_code == 200
    with schema_context("alpha"):
        assert wallet_balance(customer) == Decimal("12.50")
        assert not Transaction.objects.filter(kind="adjustment").exists()
    payout = {"amount": "-12.50", "reason": "Payout to bank", "request_key": _request_key(staff_client.get(url))}
    assert staff_client.post(url, payout).status_code == 302
    with schema_context("alpha"):
        assert wallet_balance(customer) == Decimal("0.00") and ledger_check() == []


def test_staff_who_may_only_view_cannot_adjust(alpha_client, customer):
    from django.contrib.auth.models import Permission

    with schema_context("alpha"):
        clerk = get_user_model().objects.create_user(
            username="clerk", email="clerk@alpha.test", password="Clerk-Pass-12", is_staff=True
        )
        clerk.user_permissions.add(Permission.objects.get(codename="view_customerwallet"))
    assert alpha_client.post("/accounts/login/", {"login": "clerk@alpha.test", "password": "Clerk-Pass-12"})
    url = _adjust_url(customer)
    page = alpha_client.get(url)
    assert page.status_code == 200 and 'name="request_key"' not in page.content.decode()
    alpha_client.post(url, {"amount": "100.00", "reason": "Free money", "request_key": "k" * 8})
    with schema_context("alpha"):
        assert wallet_balance(customer) == Decimal("12.50")


def test_the_adjustment_fields_are_drawn_as_inputs(staff_client, customer):
    page = staff_client.get(_adjust_url(customer)).content.decode()
    for name in ("amount", "reason"):
        tag = re.search(rf'<input[^>]*name="{name}"[^>]*>', page).group(0)
        assert "border" in tag, tag  # unfold's input classes; without them the field is invisible
