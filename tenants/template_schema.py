"""The template schema new branches are cloned from, and its drift check."""

from __future__ import annotations

from functools import lru_cache

from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django_tenants.utils import schema_exists

from tenants.errors import TemplateDrift, TemplateMissing


def template_schema_name() -> str:
    return settings.TENANT_BASE_SCHEMA


def template_schema_migrate(*, verbosity: int = 1) -> None:
    """Create the template schema if needed and apply every migration to it."""
    name = template_schema_name()
    connection.set_schema_to_public()
    if not schema_exists(name):
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE SCHEMA "{name}"')
    call_command("migrate_schemas", tenant=True, schema_name=name, interactive=False, verbosity=verbosity)
    connection.set_schema_to_public()


@lru_cache(maxsize=1)
def _migrations_on_disk() -> frozenset[tuple[str, str]]:
    # The code cannot change under a running process, so the graph is read once.
    return frozenset(MigrationLoader(None, ignore_no_migrations=True).graph.nodes)


def template_schema_missing_migrations() -> list[str]:
    """Migrations in the code that the template schema has not applied (empty when current)."""
    name = template_schema_name()
    if not schema_exists(name):
        raise TemplateMissing()
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT app, name FROM "{name}".django_migrations')
        applied = {(app, migration) for app, migration in cursor.fetchall()}
    return sorted(f"{app}.{migration}" for app, migration in _migrations_on_disk() - applied)


def template_schema_check() -> None:
    """Raise ``TemplateDrift`` if the template lags the code; a stale clone would break a branch."""
    missing = template_schema_missing_migrations()
    if missing:
        shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
        raise TemplateDrift(
            f"The branch template schema lacks {len(missing)} migration(s) ({shown}); "
            "run `python manage.py migrate` before creating branches."
        )
