"""Append-only double-entry ledger (DESIGN §3).

Amounts are signed: a debit is positive, a credit negative; every transaction's entries sum to
zero. ``Account.balance`` is a cache of the sum of its entries, updated under a row lock in the
same database transaction, and reproducible at any time (``manage.py ledger_check``).

Assets and expenses normally carry a debit (positive) balance; liabilities, equity and revenue a
credit (negative) one. ``Account.natural_balance`` flips the sign so that, for example, a branch's
prepaid balance (a liability of Site A) reads as the positive amount the branch can spend. An
account that "may not go negative" may not go below zero on its natural side.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from catalog.models import MONEY


class Account(models.Model):
    class Kind(models.TextChoices):
        ASSET = "asset", _("Asset")
        LIABILITY = "liability", _("Liability")
        EQUITY = "equity", _("Equity")
        REVENUE = "revenue", _("Revenue")
        EXPENSE = "expense", _("Expense")

    code = models.CharField(_("code"), max_length=80, unique=True)
    name = models.CharField(_("name"), max_length=120)
    kind = models.CharField(_("kind"), max_length=12, choices=Kind.choices)
    currency = models.CharField(_("currency"), max_length=3)
    # Who the account belongs to when it is not the shop's own (a customer wallet, a branch).
    owner_type = models.CharField(max_length=32, blank=True)
    owner_id = models.CharField(max_length=64, blank=True)
    may_go_negative = models.BooleanField(_("may go negative"), default=True)
    balance = models.DecimalField(_("balance"), **MONEY, default=0)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("account")
        verbose_name_plural = _("accounts")
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(
                name="account_non_negative",
                condition=Q(may_go_negative=True)
                | Q(kind__in=["asset", "expense"], balance__gte=0)
                | Q(kind__in=["liability", "equity", "revenue"], balance__lte=0),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"

    @property
    def natural_balance(self):
        """The balance on the account's normal side (a funded wallet or branch balance is positive)."""
        return self.balance if self.kind in (self.Kind.ASSET, self.Kind.EXPENSE) else -self.balance


class Transaction(models.Model):
    class Kind(models.TextChoices):
        ORDER_PAYMENT = "order_payment", _("Order payment")
        ORDER_COST = "order_cost", _("Cost of goods delivered")
        STOCK_PURCHASE = "stock_purchase", _("Stock purchase")
        REFUND = "refund", _("Refund")
        ADJUSTMENT = "adjustment", _("Adjustment")
        TOP_UP = "top_up", _("Top-up")
        PAYMENT_FEE = "payment_fee", _("Payment channel fee")
        BRANCH_SALE = "branch_sale", _("Branch sale collected by Site A")
        DUPLICATE_PAYMENT = "duplicate_payment", _("Second payment, owed back")

    kind = models.CharField(_("kind"), max_length=32, choices=Kind.choices)
    idempotency_key = models.CharField(_("idempotency key"), max_length=120, unique=True)
    reference = models.CharField(_("reference"), max_length=64, blank=True, db_index=True)
    memo = models.CharField(_("memo"), max_length=255, blank=True)
    created = models.DateTimeField(_("created"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("journal transaction")
        verbose_name_plural = _("journal transactions")
        ordering = ["-created", "-pk"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.reference}"


class Entry(models.Model):
    transaction = models.ForeignKey(Transaction, on_delete=models.PROTECT, related_name="entries")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="entries")
    amount = models.DecimalField(_("amount"), **MONEY)
    # Reporting dimensions (no foreign keys: the ledger outlives catalog rows).
    order_id = models.BigIntegerField(null=True, blank=True)
    product_id = models.BigIntegerField(null=True, blank=True)
    variant_id = models.BigIntegerField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("entry")
        verbose_name_plural = _("entries")
        indexes = [
            models.Index(fields=["account", "created"], name="entry_statement"),
            models.Index(fields=["order_id"], name="entry_order"),
            models.Index(fields=["product_id", "created"], name="entry_product_day"),
        ]
        constraints = [models.CheckConstraint(name="entry_not_zero", condition=~Q(amount=0))]

    def __str__(self) -> str:
        return f"{self.account_id}: {self.amount}"
