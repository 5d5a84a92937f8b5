"""Test fixtures shared by every app: real PostgreSQL schemas, real Redis, a real Celery worker."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django_tenants.utils import schema_context

DEMO = {
    "alpha": ("Alpha Cards", "owner@alpha.test", "alpha-owner-pass-1"),
    "beta": ("Beta Codes", "owner@beta.test", "beta-owner-pass-1"),
}


def _redis_flush_test_keys() -> None:
    from core.redis import get_redis

    client = get_redis()
    keys = list(client.scan_iter(match=f"*{settings.CACHE_KEY_PREFIX}*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture(scope="session")
def django_db_setup(request, django_test_environment, django_db_blocker, django_db_modify_db_settings):
    """The test database: public + template migrated by `migrate`; Site A, alpha and beta provisioned.

    Always set up, unlike pytest-django's default, which skips it when no test carries a django_db
    marker — tests using only ``live_db`` would otherwise run against the real database.
    """
    from django.test.utils import setup_databases, teardown_databases

    from tenants.services import branch_provision, platform_tenant_ensure

    _redis_flush_test_keys()
    with django_db_blocker.unblock():
        db_config = setup_databases(verbosity=request.config.option.verbose, interactive=False, aliases={"default"})
        assert connection.settings_dict["NAME"].startswith("test_"), "tests must never touch a real database"
        platform_tenant_ensure()
        for slug, (name, email, password) in DEMO.items():
            branch_provision(slug=slug, name=name, owner_email=email, password=password)
    yield
    with django_db_blocker.unblock():
        teardown_databases(db_config, verbosity=request.config.option.verbose)


@pytest.fixture(autouse=True)
def _fresh_state():
    """Each test starts on the public schema with no rate-limit counters, cache, host lookups or
    remembered API callers left by another test (a test client request leaves the connection on the
    branch it visited)."""
    from branch_api.provider.callers import callers_forget

    connection.set_schema_to_public()
    _redis_flush_test_keys()
    callers_forget()
    yield


@pytest.fixture
def live_db(django_db_setup, django_db_blocker):
    """Database access with real commits (for worker threads and concurrency tests).

    Unlike pytest-django's transactional_db it does not truncate the public schema afterwards (that
    would delete the session's tenants); instead it removes the branches and schemas a test created.
    """
    from tenants.models import Branch

    with django_db_blocker.unblock():
        before = set(Branch.objects.values_list("pk", flat=True))
        yield
        connection.set_schema_to_public()
        from tenants.models import Domain

        for branch in Branch.objects.exclude(pk__in=before):
            # A worker thread may still be finishing a task for this branch; domains go first.
            Domain.objects.filter(tenant=branch).delete()
            branch.delete(force_drop=True)
        _commerce_truncate()


COMMERCE_APPS = (
    "catalog",
    "cardvault",
    "orders",
    "payments",
    "ledger",
    "notifications",
    "branch_provider",
    "branch_upstream",
)
KEEP_TABLES = {"branch_provider_branchterms", "branch_provider_apicredential", "branch_upstream_upstreamconnection"}


def _commerce_truncate() -> None:
    """Empty the commerce tables of the session's shops (committed rows of a live test); the
    branch connections made at provisioning stay."""
    from django.apps import apps

    tables = {m._meta.db_table for app in COMMERCE_APPS for m in apps.get_app_config(app).get_models()} - KEEP_TABLES
    for schema in ("public", *DEMO):
        with schema_context(schema), connection.cursor() as cursor:
            cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", [schema])
            present = sorted(tables & {row[0] for row in cursor.fetchall()})
            cursor.execute("TRUNCATE " + ", ".join(f'"{table}"' for table in present) + " CASCADE")


@pytest.fixture
def alpha(db):
    from tenants.models import Branch

    return Branch.objects.get(slug="alpha")


@pytest.fixture
def beta(db):
    from tenants.models import Branch

    return Branch.objects.get(slug="beta")


def host_client(host: str) -> Client:
    return Client(HTTP_HOST=host)


@pytest.fixture
def public_client() -> Client:
    return host_client(settings.PLATFORM_DOMAIN)


@pytest.fixture
def alpha_client() -> Client:
    return host_client(f"alpha.{settings.PLATFORM_DOMAIN}")


@pytest.fixture
def beta_client() -> Client:
    return host_client(f"beta.{settings.PLATFORM_DOMAIN}")


@pytest.fixture
def staff_client(alpha_client):
    """alpha's owner, logged in to alpha's admin."""
    email, password = DEMO["alpha"][1], DEMO["alpha"][2]
    assert alpha_client.post("/accounts/login/", {"login": email, "password": password}).status_code == 302
    return alpha_client


@pytest.fixture(scope="session")
def celery_worker_thread(django_db_setup, django_db_blocker):
    """A real Celery worker (threads pool) consuming from the real Redis broker, in this process."""
    from celery.contrib.testing.worker import start_worker

    from config.celery import app

    app.control.purge()
    with django_db_blocker.unblock():
        with start_worker(
            app, pool="threads", concurrency=2, perform_ping_check=False, loglevel="WARNING", shutdown_timeout=15
        ) as worker:
            yield worker


@pytest.fixture
def in_schema():
    """``with in_schema('alpha'):`` — run ORM code inside a branch schema."""
    return schema_context
