"""The code vault: encryption at rest, dedupe, import preview, stock counts, reusable codes."""

import io
from decimal import Decimal

import pytest
from cryptography.exceptions import InvalidTag
from django.db import connection
from django_tenants.utils import schema_context

from cardvault.crypto import card_decrypt, code_digest
from cardvault.errors import ImportInvalid
from cardvault.models import Card, CardAssignment
from cardvault.services import (
    codes_parse_text,
    codes_parse_upload,
    import_commit,
    import_preview,
    variant_stock,
)
from ledger.models import Account
from orders.models import Order
from tests.commerce import pay, place, product_with_codes
from tests.concurrency import at_once

D = Decimal


@pytest.mark.django_db
def test_the_database_never_holds_the_plaintext_code():
    with schema_context("alpha"):
        variant = product_with_codes(codes=0)
        import_commit(
            variant=variant, parsed=codes_parse_text("SECRET-CODE-777|PIN-4242"), unit_cost=D("1"), source="paste"
        )
        card = Card.objects.get(variant=variant)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT code_encrypted, secret_encrypted, digest FROM cardvault_card WHERE id = %s", [card.pk]
            )
            row = " ".join(cursor.fetchone())
        assert "SECRET-CODE-777" not in row and "PIN-4242" not in row
        assert card.digest == code_digest("SECRET-CODE-777")
        assert card_decrypt(card.code_encrypted, card_id=card.pk, variant_id=variant.pk) == "SECRET-CODE-777"
        assert card_decrypt(card.secret_encrypted, card_id=card.pk, variant_id=variant.pk) == "PIN-4242"


@pytest.mark.django_db
def test_ciphertext_is_bound_to_its_card_and_variant():
    with schema_context("alpha"):
        variant = product_with_codes(codes=2)
        first, second = Card.objects.filter(variant=variant).order_by("pk")
        with pytest.raises(InvalidTag):
            card_decrypt(first.code_encrypted, card_id=second.pk, variant_id=variant.pk)  # copied to another row
        with pytest.raises(InvalidTag):
            card_decrypt(first.code_encrypted, card_id=first.pk, variant_id=variant.pk + 1)


@pytest.mark.django_db
def test_preview_counts_new_duplicate_and_invalid_lines_and_writes_nothing():
    with schema_context("alpha"):
        variant = product_with_codes(codes=0)
        import_commit(variant=variant, parsed=codes_parse_text("OLD-1"), unit_cost=D("1"), source="paste")
        text = "NEW-1\nNEW-2|pin\nNEW-1\nOLD-1\n\n" + "X" * 600 + "\n|orphan-secret\n"
        before = Card.objects.count()
        preview = import_preview(codes_parse_text(text))
        assert (preview.new, preview.duplicates, preview.invalid) == (2, 2, 2)
        assert preview.total_lines == 6
        assert [number for number, _ in preview.invalid_examples] == [6, 7]
        assert Card.objects.count() == before


@pytest.mark.django_db
def test_commit_skips_duplicates_and_records_batch_counts():
    with schema_context("alpha"):
        variant = product_with_codes(codes=0)
        first = import_commit(
            variant=variant, parsed=codes_parse_text("A-1\nA-2\nA-1"), unit_cost=D("2.50"), source="paste"
        )
        assert (first.imported, first.duplicates, first.invalid) == (2, 1, 0)
        again = import_commit(variant=variant, parsed=codes_parse_text("A-2\nA-3"), unit_cost=D("2.50"), source="paste")
        assert (again.imported, again.duplicates) == (1, 1)
        assert Card.objects.filter(variant=variant).count() == 3
        assert Account.objects.get(code="inventory").balance == D("7.50")  # 3 codes at 2.50 booked to stock


@pytest.mark.django_db
def test_csv_and_xlsx_uploads_parse_codes_and_secrets():
    from openpyxl import Workbook

    parsed = codes_parse_upload("codes.csv", b"code,secret\r\nC-1,P-1\r\nC-2,\r\n")
    assert parsed.codes == [("C-1", "P-1"), ("C-2", "")]
    book = Workbook()
    book.active.append(["code", "pin"])
    book.active.append(["X-1", "9999"])
    book.active.append([12345678, None])  # numeric cells become text
    buffer = io.BytesIO()
    book.save(buffer)
    assert codes_parse_upload("codes.xlsx", buffer.getvalue()).codes == [("X-1", "9999"), ("12345678", "")]


@pytest.mark.parametrize(
    ("name", "content"), [("codes.xlsx", b"not a zip"), ("codes.pdf", b"%PDF"), ("codes.txt", b"\xff\xfe\x00bad")]
)
def test_unreadable_uploads_get_a_clear_error(name, content):
    with pytest.raises(ImportInvalid):
        codes_parse_upload(name, content)


def test_concurrent_imports_of_the_same_codes_store_each_code_once(live_db):
    with schema_context("beta"):
        variant = product_with_codes(codes=0)
    text = "\n".join(f"RACE-{i}" for i in range(300))
    errors = []

    def run():
        try:
            with schema_context("beta"):
                import_commit(variant=variant, parsed=codes_parse_text(text), unit_cost=D("1"), source="paste")
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    at_once(run, [()] * 4)
    assert not errors, errors
    with schema_context("beta"):
        assert Card.objects.filter(variant=variant).count() == 300


@pytest.mark.django_db
def test_stock_counts_single_use_and_reusable_codes():
    with schema_context("alpha"):
        single = product_with_codes(codes=4)
        shared = product_with_codes(codes=2, reusable=True, max_uses=5)
        unlimited = product_with_codes(codes=1, reusable=True, max_uses=None)
        empty = product_with_codes(codes=0)
        place(single, 3)
        assert variant_stock([single.pk, shared.pk, unlimited.pk, empty.pk]) == {
            single.pk: 1,
            shared.pk: 10,
            unlimited.pk: None,
            empty.pk: 0,
        }


@pytest.mark.django_db
def test_reusable_code_is_sold_up_to_its_max_uses(django_capture_on_commit_callbacks):
    with schema_context("alpha"):
        variant = product_with_codes(codes=1, reusable=True, max_uses=3)
        orders = []
        with django_capture_on_commit_callbacks(execute=False):
            for _ in range(3):
                order = place(variant, 1)
                assert pay(order) == (True, "ok")
                orders.append(Order.objects.get(pk=order.pk))
        assert [o.status for o in orders] == ["delivered"] * 3
        card = Card.objects.get(variant=variant)
        assert (card.use_count, card.status) == (3, Card.Status.SOLD)
        assert CardAssignment.objects.filter(card=card).count() == 3
        assert variant_stock([variant.pk])[variant.pk] == 0
        with pytest.raises(Exception, match="sold out"):
            place(variant, 1)


@pytest.mark.django_db
def test_a_line_never_gets_the_same_reusable_code_twice(django_capture_on_commit_callbacks):
    with schema_context("alpha"):
        variant = product_with_codes(codes=2, reusable=True, max_uses=10)
        with django_capture_on_commit_callbacks(execute=False):
            order = place(variant, 3)
            pay(order)
        order.refresh_from_db()
        assert order.status == Order.Status.AWAITING_STOCK  # only two distinct codes exist
        line = order.lines.get()
        assert line.delivered_quantity == 2
        assert CardAssignment.objects.filter(order_line=line).values("card").distinct().count() == 2


@pytest.mark.django_db
def test_codes_with_line_breaks_or_control_characters_are_invalid():
    parsed = codes_parse_upload("codes.csv", b'code\r\n"BAD\nCODE"\r\nTAB\tCODE\r\nGOOD CODE\r\n')
    assert parsed.codes == [("GOOD CODE", "")]
    assert [number for number, _ in parsed.invalid] == [2, 3]


@pytest.mark.django_db
def test_voiding_takes_available_codes_out_of_stock_and_writes_off_their_cost():
    from cardvault.services import cards_void
    from ledger.services import ledger_check

    with schema_context("alpha"):
        variant = product_with_codes(codes=3, cost="4.00")
        order = place(variant, 1)
        ids = list(Card.objects.filter(variant=variant).values_list("pk", flat=True))
        assert cards_void(card_ids=ids, reason="supplier recalled") == 2  # the reserved one is left alone
        assert variant_stock([variant.pk])[variant.pk] == 0
        assert Card.objects.filter(reserved_for__order=order).count() == 1
        assert Account.objects.get(code="inventory").balance == D("4.00")
        assert Account.objects.get(code="inventory_writeoff").balance == D("8.00")
        assert ledger_check() == []


@pytest.mark.django_db
def test_an_import_delivers_orders_that_were_waiting_for_stock(django_capture_on_commit_callbacks):
    from orders.tasks import orders_retry_awaiting_stock_task

    with schema_context("alpha"):
        variant = product_with_codes(codes=1, reusable=True, max_uses=1)
        with django_capture_on_commit_callbacks(execute=False):
            order = place(variant, 1)
            other = place(variant, 1)  # reusable capacity is taken at payment, not at checkout
            pay(order)
            pay(other)
        other.refresh_from_db()
        assert other.status == Order.Status.AWAITING_STOCK
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            import_commit(variant=variant, parsed=codes_parse_text("FRESH-1"), unit_cost=D("1"), source="paste")
        assert len(callbacks) == 1  # the retry task is queued once the codes are committed
        with django_capture_on_commit_callbacks(execute=False):
            assert orders_retry_awaiting_stock_task(variant.pk) == 1
        other.refresh_from_db()
        assert other.status == Order.Status.DELIVERED
