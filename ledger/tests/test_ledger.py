"""The double-entry ledger: balanced, idempotent, non-negative where required, reproducible."""

from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Sum
from django_tenants.utils import schema_context

from ledger.errors import IdempotencyConflict, InsufficientFunds, UnbalancedTransaction
from ledger.models import Account, Entry, Transaction
from ledger.services import Line, account_get_or_create, ledger_check, ledger_post
from tests.commerce import pay, place, product_with_codes
from tests.concurrency import at_once

D = Decimal


@pytest.mark.django_db
def test_entries_must_sum_to_zero():
    with schema_context("alpha"):
        with pytest.raises(UnbalancedTransaction):
            ledger_post(
                kind="adjustment",
                idempotency_key="k1",
                lines=[Line("inventory", D("5")), Line("sales_revenue", D("-4"))],
            )
        assert not Transaction.objects.filter(idempotency_key="k1").exists()


@pytest.mark.django_db
def test_same_key_posts_once_and_a_different_body_is_a_conflict():
    with schema_context("alpha"):
        lines = [Line("payment_clearing", D("9.99")), Line("sales_revenue", D("-9.99"))]
        first = ledger_post(kind="order_payment", idempotency_key="pay:1", lines=lines)
        again = ledger_post(kind="order_payment", idempotency_key="pay:1", lines=lines)
        assert first.pk == again.pk
        assert Account.objects.get(code="payment_clearing").balance == D("9.99")
        with pytest.raises(IdempotencyConflict):
            ledger_post(
                kind="order_payment",
                idempotency_key="pay:1",
                lines=[Line("payment_clearing", D("1")), Line("sales_revenue", D("-1"))],
            )


@pytest.mark.django_db
def test_an_account_that_may_not_go_negative_refuses_and_nothing_is_written():
    with schema_context("alpha"):
        account_get_or_create("wallet:7", name="Wallet 7", kind=Account.Kind.LIABILITY, may_go_negative=False)
        # A top-up: cash in (debit clearing), owed to the customer (credit the wallet liability).
        ledger_post(
            kind="top_up", idempotency_key="t1", lines=[Line("payment_clearing", D("5")), Line("wallet:7", D("-5"))]
        )
        with pytest.raises(InsufficientFunds):
            ledger_post(
                kind="adjustment",
                idempotency_key="t2",
                lines=[Line("wallet:7", D("6")), Line("sales_revenue", D("-6"))],
            )
        wallet = Account.objects.get(code="wallet:7")
        assert (wallet.balance, wallet.natural_balance) == (D("-5"), D("5"))
        assert not Transaction.objects.filter(idempotency_key="t2").exists()
        assert ledger_check() == []


def test_concurrent_posts_keep_the_balance_exact(live_db):
    with schema_context("beta"):
        account_get_or_create("wallet:race", name="Race", kind=Account.Kind.LIABILITY, may_go_negative=False)
        ledger_post(
            kind="top_up",
            idempotency_key="race-top",
            lines=[Line("payment_clearing", D("10")), Line("wallet:race", D("-10"))],
        )
    outcomes = []

    def spend(i):
        try:
            with schema_context("beta"):
                ledger_post(
                    kind="adjustment",
                    idempotency_key=f"race-spend-{i}",
                    lines=[Line("wallet:race", D("1")), Line("sales_revenue", D("-1"))],
                )
            outcomes.append("ok")
        except InsufficientFunds:
            outcomes.append("refused")

    at_once(spend, [(i,) for i in range(16)])
    assert outcomes.count("ok") == 10 and outcomes.count("refused") == 6
    with schema_context("beta"):
        account = Account.objects.get(code="wallet:race")
        assert account.balance == D("0")
        assert account.entries.aggregate(total=Sum("amount"))["total"] == D("0")
        assert ledger_check() == []


@pytest.mark.django_db
def test_check_reports_a_balance_that_differs_from_its_entries(capsys):
    with schema_context("alpha"):
        ledger_post(
            kind="adjustment", idempotency_key="x", lines=[Line("inventory", D("3")), Line("supplier_payable", D("-3"))]
        )
        Account.objects.filter(code="inventory").update(balance=D("4"))
        assert ledger_check() == [("inventory", D("4"), D("3"))]
    with pytest.raises(CommandError, match="1 ledger difference"):
        call_command("ledger_check", schema="alpha")
    assert "inventory: cached 4.00 != entries 3.00" in capsys.readouterr().out


@pytest.mark.django_db
def test_a_sale_books_revenue_and_cost_so_profit_per_order_is_exact(django_capture_on_commit_callbacks):
    """Cost 10 (the batch cost), price 15: profit 5 on the order, from the ledger alone."""
    with schema_context("alpha"):
        variant = product_with_codes(codes=3, price="15.00", cost="9.00", batch_cost="10.00")
        with django_capture_on_commit_callbacks(execute=False):
            order = place(variant, 2)
            pay(order)
        entries = Entry.objects.filter(order_id=order.pk)
        revenue = -entries.filter(account__code="sales_revenue").aggregate(t=Sum("amount"))["t"]
        cost = entries.filter(account__code="cost_of_goods").aggregate(t=Sum("amount"))["t"]
        assert (revenue, cost, revenue - cost) == (D("30.00"), D("20.00"), D("10.00"))
        per_product = Entry.objects.filter(product_id=variant.product_id, account__code="cost_of_goods")
        assert per_product.aggregate(t=Sum("amount"))["t"] == D("20.00")
        assert ledger_check() == []
