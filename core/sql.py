"""Hand-written multi-table INSERTs for hot paths, built from model instances.

A sale writes rows into several tables that point at each other (an order, its lines and events).
Through the ORM each is a statement and a database round trip; as data-modifying CTEs of one
statement (``WITH o AS (INSERT ... RETURNING id), ... ``) they are one. The values are prepared
the way ``Model.save()`` prepares them (``pre_save`` fills ``auto_now_add`` and the like,
``get_db_prep_save`` converts), so the rows equal what the ORM would insert, and every constraint
of the tables still applies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.db import connection
from django.db.models import Model
from django.db.models.expressions import DatabaseDefault

Refs = dict[str, tuple[str, list]]


def insert_values(objs: list[Model], *, refs: Refs | Callable[[Model], Refs] | None = None) -> tuple[str, list]:
    """``INSERT INTO <table> (<columns>) VALUES (...), ...`` for ``objs`` (one model, primary key from
    its sequence) and its parameters. ``refs`` (or ``refs(obj)`` for each object) maps a field name to
    SQL (with its parameters) used for that column instead of the instance's value, e.g.
    ``("(SELECT id FROM o)", [])`` for the key of a row inserted by an earlier CTE of the statement."""
    meta = objs[0]._meta
    fields = [f for f in meta.local_concrete_fields if f is not meta.auto_field and not f.generated]
    quote = connection.ops.quote_name
    rows, params = [], []
    for obj in objs:
        obj_refs = (refs(obj) if callable(refs) else refs) or {}
        placeholders = []
        for field in fields:
            if field.name in obj_refs:
                sql, ref_params = obj_refs[field.name]
                placeholders.append(sql)
                params.extend(ref_params)
            else:
                value = field.pre_save(obj, add=True)
                if isinstance(value, DatabaseDefault):
                    placeholders.append("DEFAULT")
                    continue
                if hasattr(value, "as_sql"):
                    raise TypeError(f"insert_values: {meta.label}.{field.name} holds an expression, not a value.")
                placeholders.append("%s")
                params.append(field.get_db_prep_save(value, connection))
        rows.append(f"({', '.join(placeholders)})")
    columns = ", ".join(quote(f.column) for f in fields)
    return f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES {', '.join(rows)}", params


def copy_insert(objs: list[Model]) -> None:
    """``bulk_create`` for thousands of new rows of one model through ``COPY``: primary keys taken from
    the table's sequence first (set on the instances), then the rows streamed in one ``COPY``.

    About three times faster than ``bulk_create``, because each value is sent as the instance holds
    it: no ``get_db_prep_save`` per field, only ``auto_now``/``auto_now_add`` stamped and JSON wrapped.
    So the instances must hold what the columns store (ints, strings, Decimals, aware datetimes, ids in
    the ``_id`` attributes), as rows built from already-validated data do. No signals are sent."""
    if not objs:
        return
    from django.db.models import DateField, JSONField
    from psycopg.types.json import Jsonb

    meta = objs[0]._meta
    fields = [f for f in meta.local_concrete_fields if not f.generated]
    stamped = [f for f in fields if isinstance(f, DateField) and (f.auto_now or f.auto_now_add)]
    wrapped = [f for f in fields if isinstance(f, JSONField)]
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [meta.db_table, meta.pk.column, len(objs)],
        )
        for obj, (pk,) in zip(objs, cursor.fetchall(), strict=True):
            obj.pk = pk
            for field in stamped:
                field.pre_save(obj, add=True)
            for field in wrapped:
                setattr(obj, field.attname, Jsonb(getattr(obj, field.attname)))
        names = ", ".join(quote(f.column) for f in fields)
        attnames = [f.attname for f in fields]
        try:
            with cursor.cursor.copy(f"COPY {quote(meta.db_table)} ({names}) FROM STDIN") as copy:
                for obj in objs:
                    copy.write_row([getattr(obj, name) for name in attnames])
        finally:
            for obj in objs:
                for field in wrapped:
                    setattr(obj, field.attname, getattr(obj, field.attname).obj)
    for obj in objs:
        obj._state.adding = False
        obj._state.db = connection.alias


def select_list(model: type[Model], alias: str) -> str:
    """``alias.col1, alias.col2, ...``: every concrete column of ``model`` in field order, for a
    hand-written SELECT whose rows ``from_row`` turns back into instances."""
    quote = connection.ops.quote_name
    return ", ".join(f"{alias}.{quote(f.column)}" for f in model._meta.concrete_fields)


def from_row(model: type[Model], values) -> Model:
    """The ``model`` instance of a row's values in ``select_list`` order, converted as the ORM converts
    them (``from_db_value``), marked as loaded from the database."""
    fields = model._meta.concrete_fields
    converted = []
    for field, value in zip(fields, values, strict=True):
        for converter in field.get_db_converters(connection):
            value = converter(value, field, connection)
        converted.append(value)
    return model.from_db(connection.alias, None, converted)


def prepared_cursor():
    """A cursor for the hot paths' hand-written statements (fixed shapes, few parameters) with
    server-side parameters: psycopg prepares a statement once it ran ``DB_PREPARE_THRESHOLD`` times on
    the connection, and PostgreSQL then only executes it (re-planning by itself when the search_path
    changes, so schemas never mix). The ORM keeps client-side binding: it has no limit on the number of
    parameters, where server-side binding stops at 65,535 (a large ``IN`` list or bulk insert)."""
    from django.db.backends.postgresql.base import ServerBindingCursor

    # django-tenants (TENANT_LIMIT_SET_CALLS) keeps search_path_set_schemas until the schema changes or a
    # rollback undoes the SET; only then does a plain cursor have work to do first.
    if connection.connection is None or not getattr(connection, "search_path_set_schemas", None):
        connection.cursor().close()  # connects, and sets the schema's search_path
    return connection._prepare_cursor(ServerBindingCursor(connection.connection))


def insert_one(obj: Model) -> Model:
    """``obj.save()`` for a new row of a hot path, without building the INSERT through the ORM (no
    signals are sent: use it only for models nothing listens to)."""
    sql, params = insert_values([obj])
    pk = obj._meta.pk
    with prepared_cursor() as cursor:
        cursor.execute(f"{sql} RETURNING {connection.ops.quote_name(pk.column)}", params)
        obj.pk = cursor.fetchone()[0]
    obj._state.adding = False
    obj._state.db = connection.alias
    return obj


def fetch_together(queries: list[tuple[str, list]]) -> list[list[tuple]]:
    """Run independent queries in one round trip (psycopg's pipeline mode) and return each one's rows.

    Whatever the connection has to send first goes along in the same trip: the ``BEGIN`` of a
    transaction just opened, django-tenants' ``SET search_path``. Only for reads whose rows nobody
    needs before the last one is sent."""
    connection.ensure_connection()
    cursors = []
    try:
        with connection.connection.pipeline():
            for sql, params in queries:
                cursors.append(prepared_cursor())
                cursors[-1].execute(sql, params)
        return [cursor.fetchall() for cursor in cursors]
    finally:  # also when a query failed (raised as the pipeline syncs)
        for cursor in cursors:
            cursor.close()


@contextmanager
def wire_messages() -> Iterator[list[str]]:
    """The PostgreSQL protocol messages the connection sends and receives meanwhile, one string each
    (libpq's trace, without timestamps): what the benchmark and the tests count commits and round
    trips from."""
    import tempfile

    import psycopg

    connection.ensure_connection()
    pgconn = connection.connection.pgconn
    messages: list[str] = []
    with tempfile.TemporaryFile() as trace:
        pgconn.trace(trace.fileno())
        pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            yield messages
        finally:
            pgconn.untrace()
            trace.seek(0)
            messages.extend(trace.read().decode(errors="replace").splitlines())
