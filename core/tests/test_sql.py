"""core.sql.insert_values: rows inserted by hand-written statements equal what the ORM inserts."""

from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import F

from core.sql import insert_values
from ledger.models import Account, Entry, Transaction


@pytest.mark.django_db
def test_rows_from_insert_values_equal_the_orm_ones_and_can_point_at_each_other():
    account = Account.objects.create(code="sql-test", name="SQL test", kind=Account.Kind.ASSET)
    txn = Transaction(kind="order_payment", idempotency_key="sql-test-1", reference="R1", memo="by hand")
    entries = [Entry(transaction=txn, account=account, amount=amount) for amount in (Decimal("5.00"), Decimal("-5.00"))]
    txn_sql, txn_params = insert_values([txn])
    entries_sql, entries_params = insert_values(entries, refs={"transaction": ("(SELECT id FROM t)", [])})
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH t AS ({txn_sql} RETURNING id), e AS ({entries_sql} RETURNING id) SELECT (SELECT id FROM t), "
            "(SELECT count(*) FROM e)",
            [*txn_params, *entries_params],
        )
        txn_id, entry_count = cursor.fetchone()
    stored = Transaction.objects.get(pk=txn_id)
    assert (stored.kind, stored.idempotency_key, stored.reference, stored.memo) == (
        "order_payment",
        "sql-test-1",
        "R1",
        "by hand",
    )
    assert stored.created == txn.created  # auto_now_add filled in Python, as save() does
    assert entry_count == 2
    assert sorted(Entry.objects.filter(transaction_id=txn_id).values_list("amount", flat=True)) == [
        Decimal("-5.00"),
        Decimal("5.00"),
    ]


def test_an_expression_is_refused_not_sent_as_a_value():
    account = Account(code="x", name="x", kind=Account.Kind.ASSET, balance=F("balance") + 1)
    with pytest.raises(TypeError, match="expression"):
        insert_values([account])


@pytest.mark.django_db
def test_the_orm_takes_more_parameters_than_server_side_binding_could():
    """The ORM binds on the client: a 70,000-id IN list (past the protocol's 65,535 parameters, which a
    big import or deletion reaches) still runs. Only core.sql.prepared_cursor binds on the server."""
    assert Account.objects.filter(pk__in=range(1, 70_001)).count() == Account.objects.filter(pk__lte=70_000).count()


@pytest.mark.django_db
def test_a_hot_statement_is_prepared_after_it_ran_a_few_times_and_rows_come_back_the_same():
    from django.conf import settings

    from core.sql import from_row, prepared_cursor, select_list

    Account.objects.create(code="prep-test", name="Prepared", kind=Account.Kind.ASSET)
    sql = f"SELECT {select_list(Account, 'a')} FROM {Account._meta.db_table} a WHERE a.code = %s"
    threshold = settings.DATABASES["default"]["OPTIONS"]["prepare_threshold"]
    for _ in range(threshold + 1):
        with prepared_cursor() as cursor:
            cursor.execute(sql, ["prep-test"])
            [row] = cursor.fetchall()
        assert from_row(Account, row) == Account.objects.get(code="prep-test")
        assert from_row(Account, row).name == "Prepared"
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s", ["%a.code = $1%"])
        assert cursor.fetchone()[0] == 1


@pytest.mark.django_db
def test_rows_from_copy_insert_equal_the_ones_bulk_create_makes():
    from catalog.models import Category, Product
    from core.sql import copy_insert

    category = Category.objects.create(name="Copies", slug="copies")

    def products(tag: str, first_upstream_id: int) -> list[Product]:
        return [
            Product(
                category=category,
                name=f"{tag} {n}",
                slug=f"{tag}-{n}",
                upstream_id=first_upstream_id + n,
                delivery_mode=Product.DeliveryMode.UPSTREAM,
                checkout_fields=[{"name": "player_id", "label": "Player"}] if n % 2 else [],
                max_quantity=n + 1,
            )
            for n in range(50)
        ]

    copied, created = products("copied", 1000), products("created", 2000)
    copy_insert(copied)
    Product.objects.bulk_create(created)

    def stored(objs: list[Product]) -> list[tuple]:
        fields = ["name", "category_id", "delivery_mode", "checkout_fields", "max_quantity", "is_active", "upstream_id"]
        return [
            tuple(row)
            for row in Product.objects.filter(pk__in=[o.pk for o in objs]).order_by("pk").values_list(*fields)
        ]

    assert [p.pk for p in copied] == sorted(p.pk for p in copied)  # ids from the sequence, in order
    assert [(row[0].replace("copied", "x"), *row[1:-1], row[-1] - 1000) for row in stored(copied)] == [
        (row[0].replace("created", "x"), *row[1:-1], row[-1] - 2000) for row in stored(created)
    ]
    again = Product.objects.get(pk=copied[1].pk)
    assert again.created == copied[1].created and again.updated == copied[1].updated  # stamped as save() does
    assert copied[1].checkout_fields == [{"name": "player_id", "label": "Player"}]  # the instance is left as it was
    assert not copied[1]._state.adding
