"""The ledger admin on a branch: read-only, statements with running balances, the gross-profit report."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context

from cardvault.services import codes_parse_text, import_commit
from catalog.models import Category, Product, Variant
from ledger.models import Account, Entry, Transaction
from ledger.services import Line, ledger_post
from orders.services import CartItem, order_mark_paid, order_place

pytestmark = pytest.mark.django_db


def _post(key: str, amount: str) -> Transaction:
    return ledger_post(
        kind="adjustment",
        idempotency_key=key,
        reference=key,
        lines=[Line("payment_clearing", Decimal(amount)), Line("sales_revenue", -Decimal(amount))],
    )


def test_ledger_admin_refuses_to_add_change_or_delete(staff_client):
    with schema_context("alpha"):
        txn = _post("adj-1", "12.00")
        account = Account.objects.get(code="payment_clearing")

    assert staff_client.get("/admin/ledger/account/").status_code == 200
    assert staff_client.get(f"/admin/ledger/transaction/{txn.pk}/change/").status_code == 200  # viewable
    for url in ("/admin/ledger/account/add/", "/admin/ledger/transaction/add/"):
        assert staff_client.get(url).status_code == 403
    change = staff_client.post(f"/admin/ledger/account/{account.pk}/change/", {"name": "Renamed", "balance": "0"})
    assert change.status_code == 403
    for url in (f"/admin/ledger/account/{account.pk}/delete/", f"/admin/ledger/transaction/{txn.pk}/delete/"):
        assert staff_client.post(url, {"post": "yes"}).status_code == 403
    bulk = staff_client.post(
        "/admin/ledger/transaction/", {"action": "delete_selected", "_selected_action": [txn.pk], "index": 0}
    )
    assert bulk.status_code in (200, 302)  # "no such action", not a deletion

    with schema_context("alpha"):
        account.refresh_from_db()
        assert (account.name, account.balance) == ("Payment clearing", Decimal("12.00"))
        assert Transaction.objects.filter(pk=txn.pk).exists() and Entry.objects.filter(transaction=txn).count() == 2


def test_statement_shows_entries_with_a_running_balance_from_the_opening_balance(staff_client):
    with schema_context("alpha"):
        old = _post("adj-old", "10.00")
        _post("adj-2", "5.00")
        _post("adj-3", "-3.00")
        Entry.objects.filter(transaction=old).update(created=timezone.now() - timedelta(days=40))
        account = Account.objects.get(code="payment_clearing")

    change_page = staff_client.get(f"/admin/ledger/account/{account.pk}/change/").content.decode()
    statement_url = f"/admin/ledger/account/{account.pk}/statement/"
    assert statement_url in change_page

    response = staff_client.get(statement_url)  # default: the last 30 days

    assert response.context["opening"] == Decimal("10.00")
    assert [e.balance_after for e in response.context["page"].object_list] == [Decimal("15.00"), Decimal("12.00")]
    assert response.context["closing"] == Decimal("12.00") == account.balance

    since = (timezone.localdate() - timedelta(days=60)).isoformat()
    everything = staff_client.get(statement_url, {"date_from": since})
    assert everything.context["opening"] == Decimal("0")
    assert [e.balance_after for e in everything.context["page"].object_list] == [
        Decimal("10.00"),
        Decimal("15.00"),
        Decimal("12.00"),
    ]


def test_gross_profit_report_per_day_and_per_product_with_csv(staff_client):
    with schema_context("alpha"):
        category = Category.objects.create(name="Gift cards", slug="gift-cards")
        product = Product.objects.create(category=category, name="Profit card", slug="profit-card")
        variant = Variant.objects.create(product=product, sku="P-1", name="One", price=Decimal("15.00"))
        import_commit(variant=variant, parsed=codes_parse_text("P-A\nP-B"), unit_cost=Decimal("10.00"), source="paste")
        order = order_place(items=[CartItem(variant_id=variant.pk, quantity=2)], email="buyer@example.test")
        order_mark_paid(
            order_id=order.pk, amount=order.total, currency=order.currency, provider="test", payment_reference="r1"
        )

    assert "/admin/ledger/account/gross-profit/" in staff_client.get("/admin/ledger/account/").content.decode()
    response = staff_client.get("/admin/ledger/account/gross-profit/")

    totals = response.context["totals"]
    assert (totals.revenue, totals.cost, totals.profit) == (Decimal("30.00"), Decimal("20.00"), Decimal("10.00"))
    [day] = response.context["by_day"]
    assert (day.key, day.profit) == (timezone.localdate(), Decimal("10.00"))
    [row] = response.context["by_product"]
    assert (row.label, row.revenue, row.cost, row.profit) == (
        "Profit card",
        Decimal("30.00"),
        Decimal("20.00"),
        Decimal("10.00"),
    )

    download = staff_client.get("/admin/ledger/account/gross-profit/", {"download": "product"})
    assert download["Content-Type"].startswith("text/csv")
    assert list(csv.reader(io.StringIO(download.content.decode()))) == [
        ["product", "revenue", "cost", "profit"],
        ["Profit card", "30.00", "20.00", "10.00"],
    ]
    by_day = staff_client.get("/admin/ledger/account/gross-profit/", {"download": "day"}).content.decode()
    assert f"{timezone.localdate().isoformat()},30.00,20.00,10.00" in by_day

    yesterday = (timezone.localdate() - timedelta(days=1)).isoformat()
    earlier = staff_client.get("/admin/ledger/account/gross-profit/", {"date_to": yesterday})
    assert earlier.context["totals"].profit == 0
