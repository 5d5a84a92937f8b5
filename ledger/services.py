"""Posting to the ledger. The only way balances change."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, connection, transaction

from core.sql import from_row, insert_values, prepared_cursor, select_list
from ledger.errors import IdempotencyConflict, InsufficientFunds, UnbalancedTransaction
from ledger.models import Account, Entry, Transaction

# The shop's own chart of accounts; created on first use.
STANDARD_ACCOUNTS = {
    "payment_clearing": ("Payment clearing", Account.Kind.ASSET),
    "inventory": ("Code inventory", Account.Kind.ASSET),
    "supplier_payable": ("Owed to suppliers", Account.Kind.LIABILITY),
    "sales_revenue": ("Sales revenue", Account.Kind.REVENUE),
    "cost_of_goods": ("Cost of goods sold", Account.Kind.EXPENSE),
    "refunds": ("Refunds", Account.Kind.EXPENSE),
    "inventory_writeoff": ("Inventory written off", Account.Kind.EXPENSE),
    "wallet_adjustments": ("Wallet adjustments by staff", Account.Kind.EXPENSE),
    # A branch's money held at Site A (its prepaid balance there): codes bought from Site A are paid from it.
    "prepaid_upstream": ("Prepaid balance at Site A", Account.Kind.ASSET),
    # Payment channel fees: charged to the customer on top (income) or absorbed by the shop (expense).
    "payment_fee_income": ("Payment fees charged to customers", Account.Kind.REVENUE),
    "payment_fees": ("Payment channel fees", Account.Kind.EXPENSE),
}


@dataclass(frozen=True)
class Line:
    account: str
    amount: Decimal
    dimensions: dict = field(default_factory=dict)  # order_id / product_id / variant_id


def shop_currency() -> str:
    tenant = getattr(connection, "tenant", None)
    return getattr(tenant, "currency", None) or settings.PLATFORM_CURRENCY


def account_get_or_create(
    code: str,
    *,
    name: str | None = None,
    kind: str | None = None,
    may_go_negative: bool = True,
    owner_type: str = "",
    owner_id: str = "",
) -> Account:
    """Fetch an account by code, creating standard or described accounts on first use."""
    account = Account.objects.filter(code=code).first()
    if account:
        return account
    default_name, default_kind = STANDARD_ACCOUNTS.get(code, (name or code, kind or Account.Kind.ASSET))
    try:
        with transaction.atomic():
            return Account.objects.create(
                code=code,
                name=name or default_name,
                kind=kind or default_kind,
                currency=shop_currency(),
                may_go_negative=may_go_negative,
                owner_type=owner_type,
                owner_id=owner_id,
            )
    except IntegrityError:  # created concurrently
        return Account.objects.get(code=code)


@dataclass(frozen=True)
class Posting:
    kind: str
    idempotency_key: str
    lines: list[Line]
    reference: str = ""
    memo: str = ""


def ledger_post(
    *, kind: str, idempotency_key: str, lines: list[Line], reference: str = "", memo: str = ""
) -> Transaction:
    """Post a balanced journal transaction exactly once per ``idempotency_key``.

    Accounts are locked in primary-key order (no deadlocks between concurrent posts) and their cached
    balances move in the same database transaction as the entries. An account that may not go
    negative raises ``InsufficientFunds`` and nothing is written.
    """
    posting = Posting(kind=kind, idempotency_key=idempotency_key, lines=lines, reference=reference, memo=memo)
    return ledger_post_many([posting])[0]


def ledger_post_many(postings: list[Posting]) -> list[Transaction]:
    """``ledger_post`` for several journal transactions that belong together (e.g. a sale's payment
    and its cost): their accounts locked once, their rows inserted together; all or nothing.
    Returns the transactions in the order given."""
    with transaction.atomic():
        return _post_many(postings)


@dataclass(frozen=True)
class Posted:
    transactions: list[Transaction]
    accounts: dict[str, Account]  # by code, as locked, with the balance after the post


def ledger_post_new(postings: list[Posting]) -> Posted:
    """``ledger_post_many`` for a caller whose idempotency keys cannot have been used before (they name
    rows it just inserted) and whose own transaction is all or nothing: no look-up of earlier posts
    and no savepoints (each a round trip). The unique key still refuses a second post (the
    IntegrityError then rolls the caller's transaction back); an account that may not go negative
    raises ``InsufficientFunds``, after which the caller's transaction can only be rolled back.

    Also returns the accounts it locked, with their balances after the post (still under the lock)."""
    if not transaction.get_connection().in_atomic_block:
        raise transaction.TransactionManagementError("ledger_post_new needs the caller's transaction.")
    return _post_new(postings, savepoint=False)


def _post_many(postings: list[Posting]) -> list[Transaction]:
    keys = [posting.idempotency_key for posting in postings]
    existing = {txn.idempotency_key: txn for txn in Transaction.objects.filter(idempotency_key__in=keys)}
    for posting in postings:
        if posting.idempotency_key in existing:
            _same_lines_or_conflict(existing[posting.idempotency_key], posting.lines)
    new = [
        replace(p, lines=[line for line in p.lines if line.amount])
        for p in postings
        if p.idempotency_key not in existing
    ]
    if not new:
        return [existing[key] for key in keys]
    try:
        created = _post_new(new, savepoint=True).transactions
    except IntegrityError as exc:
        if "idempotency_key" in str(exc):  # a concurrent post with the same key won
            found = {txn.idempotency_key: txn for txn in Transaction.objects.filter(idempotency_key__in=keys)}
            return [found[key] for key in keys]
        raise
    existing.update((txn.idempotency_key, txn) for txn in created)
    return [existing[key] for key in keys]


def _post_new(postings: list[Posting], *, savepoint: bool) -> Posted:
    """Insert postings not made before (zero lines dropped): lock their accounts in pk order, insert the
    transactions and entries, move the cached balances. Raises ``InsufficientFunds`` when an account
    that may not go negative would; a repeated idempotency key raises the IntegrityError."""
    postings = [replace(p, lines=[line for line in p.lines if line.amount]) for p in postings]
    for posting in postings:
        if not posting.lines or sum((line.amount for line in posting.lines), Decimal(0)) != 0:
            raise UnbalancedTransaction()
    accounts = _accounts_lock({line.account for posting in postings for line in posting.lines})
    deltas: dict[int, Decimal] = {}
    for posting in postings:
        for line in posting.lines:
            deltas[accounts[line.account].pk] = deltas.get(accounts[line.account].pk, Decimal(0)) + line.amount
    created = [
        Transaction(kind=p.kind, idempotency_key=p.idempotency_key, reference=p.reference, memo=p.memo)
        for p in postings
    ]
    entries = [
        Entry(transaction=txn, account_id=accounts[line.account].pk, amount=line.amount, **line.dimensions)
        for txn, posting in zip(created, postings, strict=True)
        for line in posting.lines
    ]
    try:
        with transaction.atomic(savepoint=savepoint):
            _rows_insert(created, entries, deltas)
    except IntegrityError as exc:
        if "account_non_negative" in str(exc):
            raise InsufficientFunds() from exc
        raise
    for account in accounts.values():
        account.balance += deltas.get(account.pk, Decimal(0))
    return Posted(transactions=created, accounts=accounts)


def _accounts_lock(codes: set[str]) -> dict[str, Account]:
    """Lock the accounts in primary-key order (so concurrent posts cannot deadlock), creating any
    that do not exist yet."""
    locked = _accounts_select_for_update(codes)
    missing = codes - locked.keys()
    if missing:
        for code in sorted(missing):
            account_get_or_create(code)
        locked = _accounts_select_for_update(codes)
    return locked


def _accounts_select_for_update(codes: set[str]) -> dict[str, Account]:
    # Hand-written: this runs in every sale, and building it through the ORM costs more than running it.
    with prepared_cursor() as cursor:
        cursor.execute(
            f"SELECT {select_list(Account, 'a')} FROM {Account._meta.db_table} a WHERE a.code = ANY(%s) "
            "ORDER BY a.id FOR UPDATE",
            [sorted(codes)],
        )
        accounts = [from_row(Account, row) for row in cursor.fetchall()]
    return {account.code: account for account in accounts}


def _rows_insert(transactions: list[Transaction], entries: list[Entry], deltas: dict[int, Decimal]) -> None:
    """The journal transactions, their entries and the accounts' cached balances in one statement (one
    round trip): an account that may not go negative still fails its check constraint, a repeated
    idempotency key its unique constraint, and then nothing of it is written. Sets the primary keys."""
    transactions_sql, transactions_params = insert_values(transactions)
    entries_sql, entries_params = insert_values(
        entries,
        refs=lambda entry: {
            "transaction": ("(SELECT id FROM t WHERE idempotency_key = %s)", [entry.transaction.idempotency_key])
        },
    )
    values = ", ".join(["(%s::bigint, %s::numeric)"] * len(deltas))
    deltas_params = [item for pair in deltas.items() for item in pair]
    with prepared_cursor() as cursor:
        cursor.execute(
            f"WITH t AS ({transactions_sql} RETURNING id, idempotency_key), e AS ({entries_sql}), "
            f"b AS (UPDATE {Account._meta.db_table} AS a SET balance = a.balance + v.delta, updated = now() "
            f"FROM (VALUES {values}) AS v(id, delta) WHERE a.id = v.id) "
            "SELECT idempotency_key, id FROM t",
            [*transactions_params, *entries_params, *deltas_params],
        )
        ids = dict(cursor.fetchall())
    for txn in transactions:
        txn.pk = ids[txn.idempotency_key]
        txn._state.adding = False
    for entry in entries:
        entry.transaction_id = entry.transaction.pk


def _same_lines_or_conflict(existing: Transaction, lines: list[Line]) -> None:
    wanted = sorted((line.account, line.amount) for line in lines if line.amount)
    stored = sorted(existing.entries.values_list("account__code", "amount"))
    if wanted != stored:
        raise IdempotencyConflict()


def ledger_check() -> list[tuple[str, Decimal, Decimal]]:
    """Recompute every balance from its entries; return (account, cached, recomputed) mismatches,
    plus any transaction whose entries do not sum to zero (as account ``txn:<id>``)."""
    from django.db.models import Sum

    problems: list[tuple[str, Decimal, Decimal]] = []
    sums = dict(Entry.objects.values("account_id").annotate(total=Sum("amount")).values_list("account_id", "total"))
    for account in Account.objects.order_by("pk"):
        recomputed = sums.get(account.pk) or Decimal("0.00")
        if recomputed != account.balance:
            problems.append((account.code, account.balance, recomputed))
    unbalanced = Entry.objects.values("transaction_id").annotate(total=Sum("amount")).exclude(total=0)
    for row in unbalanced:
        problems.append((f"txn:{row['transaction_id']}", Decimal(0), row["total"]))
    return problems
