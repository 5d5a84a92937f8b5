"""Vault operations: import, stock, reservation and allocation, reveal, key rotation."""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Count, F, Q, Sum
from django.utils import timezone

from cardvault.crypto import card_decrypt, card_encrypt, code_digest, code_normalize, current_key_version
from cardvault.errors import ImportInvalid, OutOfStock
from cardvault.models import Card, CardAssignment, CardReveal, ImportBatch
from catalog.models import Variant
from core.sql import prepared_cursor

MAX_CODE_LENGTH = 512


# --- Import ---------------------------------------------------------------------------------------


@dataclass
class ParsedCodes:
    codes: list[tuple[str, str]] = field(default_factory=list)  # (code, secret)
    invalid: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)
    duplicates_in_input: int = 0


@dataclass(frozen=True)
class ImportPreview:
    total_lines: int
    new: int
    duplicates: int  # already in the vault or repeated in the input
    invalid: int
    invalid_examples: list[tuple[int, str]]


def _accept(parsed: ParsedCodes, seen: set[str], number: int, code: str, secret: str = "") -> None:
    code, secret = code_normalize(code), secret.strip()
    if not code:
        return
    if len(code) > MAX_CODE_LENGTH or len(secret) > MAX_CODE_LENGTH:
        parsed.invalid.append((number, "longer than 512 characters"))
    elif any(unicodedata.category(ch).startswith(("C", "Z")) and ch != " " for ch in code + secret):
        # Line breaks, tabs, NULs and other invisible characters would corrupt TXT exports and
        # confuse customers; a cell in a CSV/XLSX can carry them where a TXT line cannot.
        parsed.invalid.append((number, "contains line breaks or control characters"))
    elif code in seen:
        parsed.duplicates_in_input += 1
    else:
        seen.add(code)
        parsed.codes.append((code, secret))


def codes_parse_text(text: str) -> ParsedCodes:
    """One code per line; ``code|secret`` pairs (e.g. card number and PIN) are split on the first bar."""
    parsed, seen = ParsedCodes(), set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        code, _, secret = line.partition("|")
        if not code.strip():
            parsed.invalid.append((number, "empty code before '|'"))
            continue
        _accept(parsed, seen, number, code, secret)
    return parsed


def codes_parse_rows(rows: Iterable[Iterable]) -> ParsedCodes:
    """CSV/XLSX rows: first column code, optional second column secret; a header row 'code' is skipped."""
    parsed, seen = ParsedCodes(), set()
    for number, row in enumerate(rows, start=1):
        cells = ["" if cell is None else str(cell) for cell in row]
        if not cells or not any(c.strip() for c in cells):
            continue
        if number == 1 and cells[0].strip().lower() in {"code", "codes", "card", "卡密"}:
            continue
        _accept(parsed, seen, number, cells[0], cells[1] if len(cells) > 1 else "")
    return parsed


def codes_parse_upload(name: str, content: bytes) -> ParsedCodes:
    """Parse an uploaded TXT, CSV or XLSX file; raises ``ImportInvalid`` with a readable reason."""
    lowered = name.lower()
    if lowered.endswith(".xlsx"):
        from openpyxl import load_workbook

        try:
            sheet = load_workbook(io.BytesIO(content), read_only=True, data_only=True).active
        except Exception as exc:  # openpyxl raises many types for a corrupt file
            raise ImportInvalid("This is not a readable XLSX file.") from exc
        return codes_parse_rows(sheet.iter_rows(values_only=True))
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportInvalid("The file is not UTF-8 text.") from exc
    if lowered.endswith(".csv"):
        return codes_parse_rows(csv.reader(io.StringIO(text)))
    if lowered.endswith(".txt") or "." not in lowered:
        return codes_parse_text(text)
    raise ImportInvalid("Upload a .txt, .csv or .xlsx file.")


def _existing_digests(digests: list[str]) -> set[str]:
    # One array parameter per chunk (``= ANY(%s)``), not one placeholder per digest: building and
    # parsing ``IN (%s, %s, …)`` with thousands of placeholders cost more than the index lookups.
    found: set[str] = set()
    with connection.cursor() as cursor:
        for start in range(0, len(digests), 50_000):
            cursor.execute(
                f"SELECT digest FROM {Card._meta.db_table} WHERE digest = ANY(%s)", [digests[start : start + 50_000]]
            )
            found.update(row[0] for row in cursor.fetchall())
    return found


def import_preview(parsed: ParsedCodes) -> ImportPreview:
    """Counts of new / duplicate / invalid lines, without writing anything."""
    digests = [code_digest(code) for code, _ in parsed.codes]
    existing = _existing_digests(digests)
    new = sum(1 for d in digests if d not in existing)
    total = len(parsed.codes) + parsed.duplicates_in_input + len(parsed.invalid)
    return ImportPreview(
        total_lines=total,
        new=new,
        duplicates=len(parsed.codes) - new + parsed.duplicates_in_input,
        invalid=len(parsed.invalid),
        invalid_examples=parsed.invalid[:10],
    )


@transaction.atomic
def import_commit(
    *,
    variant: Variant,
    parsed: ParsedCodes,
    unit_cost: Decimal,
    source: str,
    reusable: bool = False,
    max_uses: int | None = None,
    note: str = "",
    actor=None,
    funding_account: str = "supplier_payable",
) -> ImportBatch:
    """Encrypt and store the new codes of ``parsed`` as one batch; duplicates are skipped, not errors.

    Rows are streamed with COPY into a temporary table and inserted with ON CONFLICT DO NOTHING, so a
    concurrent import of the same code cannot fail the batch or store the code twice. The batch cost
    is booked to inventory (single-use codes) in the same transaction.
    """
    from ledger.services import Line, ledger_post

    batch = ImportBatch.objects.create(
        variant=variant,
        source=source,
        unit_cost=unit_cost,
        reusable=reusable,
        max_uses=max_uses if reusable else 1,
        note=note,
        created_by=actor,
        lines_total=len(parsed.codes) + parsed.duplicates_in_input + len(parsed.invalid),
        invalid=len(parsed.invalid),
    )
    rows = [(code, secret, code_digest(code)) for code, secret in parsed.codes]
    existing = _existing_digests([digest for _, _, digest in rows])
    rows = [row for row in rows if row[2] not in existing]
    inserted = _copy_cards(batch, rows, reusable=reusable, max_uses=max_uses if reusable else 1) if rows else 0
    batch.imported = inserted
    batch.duplicates = batch.lines_total - batch.invalid - inserted
    batch.save(update_fields=["imported", "duplicates"])
    if inserted:
        transaction.on_commit(lambda: _retry_waiting_orders(batch.variant_id))
        _stock_moved([batch.variant_id])
    if inserted and not reusable and unit_cost > 0:
        total = unit_cost * inserted
        ledger_post(
            kind="stock_purchase",
            idempotency_key=f"import-batch:{batch.pk}",
            reference=f"batch-{batch.pk}",
            memo=f"{inserted} codes of {variant.sku}",
            lines=[
                Line("inventory", total, {"variant_id": variant.pk, "product_id": variant.product_id}),
                Line(funding_account, -total, {"variant_id": variant.pk, "product_id": variant.product_id}),
            ],
        )
    return batch


def _stock_moved(variant_ids) -> None:
    """Let branches that sell this stock know (Site A only; coalesced, sent after commit)."""
    from branch_api.provider.webhooks import stock_changed_soon

    stock_changed_soon(variant_ids)


def _retry_waiting_orders(variant_id: int) -> None:
    from orders.tasks import orders_retry_awaiting_stock_task

    orders_retry_awaiting_stock_task.delay(variant_id)


def _copy_cards(batch: ImportBatch, rows: list[tuple[str, str, str]], *, reusable: bool, max_uses: int | None) -> int:
    table = Card._meta.db_table
    now = timezone.now()
    version = current_key_version()
    with connection.cursor() as cursor:
        # Ids first: the ciphertext is bound to its card id (AAD), so ids are known before encrypting.
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)", [table, len(rows)]
        )
        ids = [row[0] for row in cursor.fetchall()]
        cursor.execute(f"CREATE TEMP TABLE card_import (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP")
        columns = (
            "id",
            "variant_id",
            "batch_id",
            "code_encrypted",
            "secret_encrypted",
            "key_version",
            "digest",
            "status",
            "reusable",
            "max_uses",
            "use_count",
            "created",
            "status_changed_at",
        )
        with cursor.cursor.copy(f"COPY card_import ({', '.join(columns)}) FROM STDIN") as copy:
            for card_id, (code, secret, digest) in zip(ids, rows, strict=True):
                copy.write_row(
                    (
                        card_id,
                        batch.variant_id,
                        batch.pk,
                        card_encrypt(code, card_id=card_id, variant_id=batch.variant_id),
                        card_encrypt(secret, card_id=card_id, variant_id=batch.variant_id) if secret else "",
                        version,
                        digest,
                        Card.Status.AVAILABLE,
                        reusable,
                        max_uses,
                        0,
                        now,
                        now,
                    )
                )
        cursor.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(columns)} FROM card_import "
            "ON CONFLICT (digest) DO NOTHING"
        )
        inserted = cursor.rowcount
        cursor.execute("DROP TABLE card_import")
    return inserted


# --- Stock ----------------------------------------------------------------------------------------


def variant_stock(variant_ids: Iterable[int]) -> dict[int, int | None]:
    """Sellable units per variant from the vault, in one query: available single-use codes plus the
    remaining uses of reusable codes (``None`` = unlimited). Variants without codes map to 0."""
    ids = list(variant_ids)
    stock: dict[int, int | None] = dict.fromkeys(ids, 0)
    if not ids:
        return stock
    rows = (
        Card.objects.filter(variant_id__in=ids, status=Card.Status.AVAILABLE)
        .values("variant_id")
        .annotate(
            single=Count("id", filter=Q(reusable=False)),
            reusable_left=Sum(F("max_uses") - F("use_count"), filter=Q(reusable=True, max_uses__isnull=False)),
            unlimited=Count("id", filter=Q(reusable=True, max_uses__isnull=True)),
        )
    )
    for row in rows:
        stock[row["variant_id"]] = None if row["unlimited"] else row["single"] + (row["reusable_left"] or 0)
    return stock


# --- Reservation and allocation ------------------------------------------------------------------


def cards_reserve(*, variant_id: int, line_id: int, quantity: int, until: datetime) -> int:
    """Reserve up to ``quantity`` single-use codes for an order line; returns how many were reserved.

    ``FOR UPDATE SKIP LOCKED`` in id order: concurrent buyers never wait on or take the same code.
    Must run inside the caller's transaction.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH picked AS (
                SELECT id FROM {Card._meta.db_table}
                WHERE variant_id = %s AND status = 'available' AND NOT reusable
                ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED
            )
            UPDATE {Card._meta.db_table} c
            SET status = 'reserved', reserved_until = %s, reserved_for_id = %s, status_changed_at = now()
            FROM picked WHERE c.id = picked.id
            """,
            [variant_id, quantity, until, line_id],
        )
        reserved = cursor.rowcount
    if reserved:
        _stock_moved([variant_id])
    return reserved


def cards_release_for_line(*, line_id: int) -> int:
    """Return a line's reserved codes to stock (order expired or cancelled)."""
    released = Card.objects.filter(reserved_for_id=line_id, status=Card.Status.RESERVED)
    variant_ids = set(released.values_list("variant_id", flat=True))
    count = released.update(
        status=Card.Status.AVAILABLE, reserved_until=None, reserved_for=None, status_changed_at=timezone.now()
    )
    if count:
        _stock_moved(variant_ids)
    return count


def cards_assign(*, line, quantity: int) -> list[CardAssignment]:
    """Turn a line's reservations (topped up from stock if they lapsed) and reusable uses into
    assignments. Returns the assignments made; fewer than ``quantity`` means stock ran out."""
    now = timezone.now()
    reserved = list(
        Card.objects.select_for_update()
        .filter(reserved_for_id=line.pk, status=Card.Status.RESERVED)
        .order_by("pk")[:quantity]
    )
    missing = quantity - len(reserved)
    if missing:
        far = now + timezone.timedelta(minutes=5)
        cards_reserve(variant_id=line.variant_id, line_id=line.pk, quantity=missing, until=far)
        reserved = list(
            Card.objects.select_for_update()
            .filter(reserved_for_id=line.pk, status=Card.Status.RESERVED)
            .order_by("pk")[:quantity]
        )
    assignments = []
    batch_costs = dict(ImportBatch.objects.filter(cards__in=reserved).values_list("pk", "unit_cost").distinct())
    for card in reserved:
        assignments.append(
            CardAssignment(card=card, order_line=line, reusable=False, unit_cost=batch_costs[card.batch_id])
        )
    Card.objects.filter(pk__in=[c.pk for c in reserved]).update(
        status=Card.Status.SOLD, sold_at=now, reserved_until=None, use_count=1, status_changed_at=now
    )
    missing = quantity - len(reserved)
    if missing:
        assignments.extend(_reusable_assign(line=line, quantity=missing))
    CardAssignment.objects.bulk_create(assignments)
    if assignments:
        _stock_moved([line.variant_id])
    return assignments


def cards_sell(*, lines) -> list[CardAssignment]:
    """Take codes straight from stock for lines paid at once (no reservation step) and record their
    assignments; each assignment carries its card, ready to reveal. Single-use codes first, then uses
    of reusable codes, as ``cards_assign`` does.

    One statement per line: ``FOR UPDATE SKIP LOCKED`` in id order like ``cards_reserve`` (concurrent
    buyers never wait on or take the same code), marking the codes sold, inserting their assignments
    and returning both with the batch cost. A line that cannot be filled raises ``OutOfStock``; the
    caller's transaction (which this must run in) then rolls everything back.
    """
    now = timezone.now()
    assignments: list[CardAssignment] = []
    shared: list[CardAssignment] = []
    card, batch, assignment = Card._meta.db_table, ImportBatch._meta.db_table, CardAssignment._meta.db_table
    with prepared_cursor() as cursor:
        for line in lines:
            cursor.execute(
                f"""
                WITH picked AS (
                    SELECT id FROM {card}
                    WHERE variant_id = %s AND status = 'available' AND NOT reusable
                    ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED
                ), sold AS (
                    UPDATE {card} c
                    SET status = 'sold', sold_at = %s, use_count = 1, status_changed_at = %s
                    FROM picked, {batch} b
                    WHERE c.id = picked.id AND b.id = c.batch_id
                    RETURNING c.id, c.batch_id, c.code_encrypted, c.secret_encrypted, b.unit_cost
                ), assigned AS (
                    INSERT INTO {assignment} (card_id, order_line_id, reusable, unit_cost, created, refunded_at)
                    SELECT id, %s, false, unit_cost, %s, NULL FROM sold ORDER BY id
                    RETURNING id, card_id
                )
                SELECT sold.id, sold.batch_id, sold.code_encrypted, sold.secret_encrypted, sold.unit_cost, assigned.id
                FROM sold JOIN assigned ON assigned.card_id = sold.id
                ORDER BY sold.id
                """,
                [line.variant_id, line.quantity, now, now, line.pk, now],
            )
            rows = cursor.fetchall()
            # Like cards_assign: single-use codes first, then uses of reusable ones.
            if len(rows) < line.quantity:
                made = _reusable_assign(line=line, quantity=line.quantity - len(rows))
                out_of_stock(len(rows) + len(made), line.quantity)
                shared.extend(made)
            for card_id, batch_id, code_encrypted, secret_encrypted, unit_cost, assignment_id in rows:
                sold = Card(
                    id=card_id,
                    variant_id=line.variant_id,
                    batch_id=batch_id,
                    code_encrypted=code_encrypted,
                    secret_encrypted=secret_encrypted,
                    status=Card.Status.SOLD,
                )
                made = CardAssignment(
                    id=assignment_id, card=sold, order_line=line, reusable=False, unit_cost=unit_cost, created=now
                )
                made._state.adding = False
                assignments.append(made)
    # The single-use codes' assignments were inserted with them, in the same statement.
    CardAssignment.objects.bulk_create(shared)
    _stock_moved({line.variant_id for line in lines})
    return [*shared, *assignments]


def _reusable_assign(*, line, quantity: int) -> list[CardAssignment]:
    """Reusable codes: one use per unit, a code may serve the same line once. Waits on row locks
    (never skips): a shared code is the same row for every buyer."""
    made: list[CardAssignment] = []
    candidates = (
        Card.objects.select_for_update()
        .filter(variant_id=line.variant_id, reusable=True, status=Card.Status.AVAILABLE)
        .exclude(assignments__order_line=line)
        .filter(Q(max_uses__isnull=True) | Q(use_count__lt=F("max_uses")))
        .select_related("batch")
        .order_by("pk")
    )
    for card in candidates[:quantity]:
        card.use_count += 1
        exhausted = card.max_uses is not None and card.use_count >= card.max_uses
        Card.objects.filter(pk=card.pk).update(
            use_count=F("use_count") + 1,
            status_changed_at=timezone.now(),
            **({"status": Card.Status.SOLD, "sold_at": timezone.now()} if exhausted else {}),
        )
        made.append(CardAssignment(card=card, order_line=line, reusable=True, unit_cost=card.batch.unit_cost))
    return made


@transaction.atomic
def cards_void(*, card_ids: list[int], actor=None, reason: str = "") -> int:
    """Take available codes out of stock (bad, leaked or refunded by the supplier) and write their
    cost off inventory. Reserved or sold codes are left alone. Returns how many were voided."""
    from ledger.services import Line, ledger_post

    cards = list(
        Card.objects.select_for_update(skip_locked=True)
        .filter(pk__in=card_ids, status=Card.Status.AVAILABLE)
        .select_related("batch")
        .order_by("pk")
    )
    if not cards:
        return 0
    Card.objects.filter(pk__in=[c.pk for c in cards]).update(status=Card.Status.VOID, status_changed_at=timezone.now())
    by_variant: dict[int, Decimal] = {}
    for card in cards:
        if not card.reusable:
            by_variant[card.variant_id] = by_variant.get(card.variant_id, Decimal("0")) + card.batch.unit_cost
    _stock_moved({card.variant_id for card in cards})
    for variant_id, cost in by_variant.items():
        if cost:
            dims = {"variant_id": variant_id}
            ledger_post(
                kind="adjustment",
                idempotency_key=f"void:{variant_id}:{min(c.pk for c in cards)}:{len(cards)}",
                reference="void",
                memo=(reason or "codes voided")[:255],
                lines=[Line("inventory_writeoff", cost, dims), Line("inventory", -cost, dims)],
            )
    return len(cards)


# --- Reveal ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RevealedCode:
    card_id: int
    code: str
    secret: str


def cards_reveal(
    *,
    cards: list[Card],
    channel: str,
    order_number: str = "",
    user=None,
    ip: str | None = None,
    user_agent: str = "",
    log_into: list | None = None,
) -> list[RevealedCode]:
    """Decrypt codes to show or send them, logging one reveal row per code. ``log_into``: a list of rows
    the caller writes itself, later in the same transaction (the reveal rows are added to it instead of
    inserted now)."""
    revealed = [
        RevealedCode(
            card_id=card.pk,
            code=card_decrypt(card.code_encrypted, card_id=card.pk, variant_id=card.variant_id),
            secret=card_decrypt(card.secret_encrypted, card_id=card.pk, variant_id=card.variant_id)
            if card.secret_encrypted
            else "",
        )
        for card in cards
    ]
    rows = [
        CardReveal(
            card=card,
            channel=channel,
            order_number=order_number,
            user=user if getattr(user, "is_authenticated", False) else None,
            ip=ip,
            user_agent=(user_agent or "")[:255],
        )
        for card in cards
    ]
    if log_into is not None:
        log_into.extend(rows)
    else:
        CardReveal.objects.bulk_create(rows)
    return revealed


def cards_rotate_keys(*, batch_size: int = 1000) -> int:
    """Re-encrypt every code not under the current key. Safe to interrupt and re-run."""
    version = current_key_version()
    done = 0
    while True:
        with transaction.atomic():
            cards = list(
                Card.objects.select_for_update(skip_locked=True)
                .exclude(key_version=version)
                .order_by("pk")[:batch_size]
            )
            if not cards:
                return done
            for card in cards:
                card.code_encrypted = card_encrypt(
                    card_decrypt(card.code_encrypted, card_id=card.pk, variant_id=card.variant_id),
                    card_id=card.pk,
                    variant_id=card.variant_id,
                )
                if card.secret_encrypted:
                    card.secret_encrypted = card_encrypt(
                        card_decrypt(card.secret_encrypted, card_id=card.pk, variant_id=card.variant_id),
                        card_id=card.pk,
                        variant_id=card.variant_id,
                    )
                card.key_version = version
            Card.objects.bulk_update(cards, ["code_encrypted", "secret_encrypted", "key_version"])
            done += len(cards)


def out_of_stock(available: int | None, wanted: int) -> None:
    if available is not None and available < wanted:
        raise OutOfStock(
            f"Sorry, only {available} left in stock." if available else "Sorry, this item is sold out.",
            field="quantity",
        )
