"""Hand-written multi-table INSERTs for hot paths, built from model instances.

A sale writes rows into several tables that point at each other (an order, its lines and events).
Through the ORM each is a statement and a database round trip; as data-modifying CTEs of one
statement (``WITH o AS (INSERT ... RETURNING id), ... ``) they are one. The values are prepared
the way ``Model.save()`` prepares them (``pre_save`` fills ``auto_now_add`` and the like,
``get_db_prep_save`` converts), so the rows equal what the ORM would insert, and every constraint
of the tables still applies.
"""

from __future__ import annotations

from collections.abc import Callable

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
