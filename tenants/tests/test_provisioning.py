"""Provisioning by template clone: complete, fast, retry-safe, and refused from a stale template."""

import json
import threading

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django_tenants.utils import schema_context, schema_exists

from conftest import host_client
from tenants import services
from tenants.errors import SlugReserved, SlugTaken, TemplateDrift, TemplateMissing
from tenants.models import Branch, Domain
from tenants.services import branch_provision
from tenants.template_schema import template_schema_migrate

User = get_user_model()


def _layout(schema: str) -> dict:
    """Tables -> columns, plus indexes and constraints, of a schema (names only, no data)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name, data_type, is_nullable, column_default IS NOT NULL "
            "FROM information_schema.columns WHERE table_schema = %s ORDER BY 1, 2",
            [schema],
        )
        columns = cursor.fetchall()
        cursor.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s ORDER BY 1", [schema])
        indexes = [row[0] for row in cursor.fetchall()]
        cursor.execute(
            "SELECT conname, contype FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
            "WHERE n.nspname = %s ORDER BY 1",
            [schema],
        )
        constraints = cursor.fetchall()
    return {"columns": columns, "indexes": indexes, "constraints": constraints}


@pytest.mark.django_db
def test_clone_has_every_table_column_index_and_constraint_of_a_migrated_schema():
    with connection.cursor() as cursor:
        cursor.execute('CREATE SCHEMA "ref_migrated"')
    call_command("migrate_schemas", tenant=True, schema_name="ref_migrated", interactive=False, verbosity=0)
    branch_provision(slug="clone-check", name="Clone", owner_email="c@clone.test", password="pw-1234567890")

    migrated, cloned = _layout("ref_migrated"), _layout("clone_check")
    assert len(migrated["columns"]) > 50
    assert cloned["columns"] == migrated["columns"]
    assert cloned["indexes"] == migrated["indexes"]
    assert cloned["constraints"] == migrated["constraints"]


@pytest.mark.django_db
def test_cloned_schema_has_the_template_data_and_working_sequences():
    result = branch_provision(slug="seqs", name="Seqs", owner_email="o@seqs.test", password="pw-1234567890")
    with schema_context(result.schema):
        from django.contrib.contenttypes.models import ContentType

        assert ContentType.objects.filter(app_label="auth", model="user").exists()
        owner = User.objects.get(email="o@seqs.test")
        extra = User.objects.create_user(username="second", email="second@seqs.test")
        assert extra.pk > owner.pk
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM django_migrations")
            assert cursor.fetchone()[0] > 20


@pytest.mark.django_db
def test_provision_creates_branch_schema_domain_and_owner_superuser():
    result = branch_provision(slug="delta-shop", name="Delta", owner_email="Owner@Delta.test", password="pw-1234567890")
    assert (result.schema, result.domain, result.created) == ("delta_shop", "delta-shop.localhost", True)
    branch = Branch.objects.get(slug="delta-shop")
    assert branch.status == Branch.Status.ACTIVE and branch.activated_at is not None
    assert Domain.objects.get(domain="delta-shop.localhost").tenant == branch
    assert schema_exists("delta_shop")
    with schema_context("delta_shop"):
        owner = User.objects.get(email="owner@delta.test")
        assert owner.is_superuser and owner.is_staff and owner.check_password("pw-1234567890")
    with schema_context("public"):
        assert not User.objects.filter(email="owner@delta.test").exists()


@pytest.mark.django_db
def test_owner_can_log_into_the_new_branch_admin():
    branch_provision(slug="epsilon", name="Epsilon", owner_email="o@eps.test", password="pw-1234567890")
    client = host_client("epsilon.localhost")
    response = client.post("/accounts/login/?next=/admin/", {"login": "o@eps.test", "password": "pw-1234567890"})
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200


@pytest.mark.django_db
def test_provision_is_idempotent_for_the_same_owner():
    first = branch_provision(slug="zeta", name="Zeta", owner_email="o@zeta.test", password="pw-1234567890")
    again = branch_provision(slug="zeta", name="Zeta", owner_email="o@zeta.test", password="pw-1234567890")
    assert (again.branch_id, again.schema, again.created) == (first.branch_id, first.schema, False)
    assert Branch.objects.filter(slug="zeta").count() == 1
    with schema_context("zeta"):
        assert User.objects.filter(email="o@zeta.test").count() == 1


@pytest.mark.django_db
def test_another_owner_cannot_take_an_existing_slug():
    with pytest.raises(SlugTaken):
        branch_provision(slug="alpha", name="Mine", owner_email="intruder@x.test", password="pw-1234567890")
    with schema_context("alpha"):
        assert not User.objects.filter(email="intruder@x.test").exists()


@pytest.mark.django_db
def test_reserved_slug_is_refused():
    with pytest.raises(SlugReserved):
        branch_provision(slug="admin", name="Admin", owner_email="o@x.test")


@pytest.mark.django_db
def test_retry_after_a_failure_midway_completes(monkeypatch):
    real_owner_ensure = services._owner_ensure
    calls = {"n": 0}

    def crash_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("worker died while creating the owner")
        return real_owner_ensure(*args, **kwargs)

    monkeypatch.setattr(services, "_owner_ensure", crash_once)
    with pytest.raises(ConnectionError):
        branch_provision(slug="crashy", name="Crashy", owner_email="o@crashy.test", password="pw-1234567890")
    # The failed run left no half-made schema or domain behind, only the pending row.
    assert not schema_exists("crashy")
    assert not Domain.objects.filter(domain="crashy.localhost").exists()
    assert Branch.objects.get(slug="crashy").status == Branch.Status.PROVISIONING

    result = branch_provision(slug="crashy", name="Crashy", owner_email="o@crashy.test", password="pw-1234567890")
    assert result.schema == "crashy" and schema_exists("crashy")
    assert Branch.objects.get(slug="crashy").status == Branch.Status.ACTIVE
    with schema_context("crashy"):
        assert User.objects.get(email="o@crashy.test").check_password("pw-1234567890")


@pytest.mark.django_db
def test_drifted_template_is_refused_with_a_clear_error():
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM _template.django_migrations WHERE id = (SELECT max(id) FROM _template.django_migrations)"
        )
    with pytest.raises(TemplateDrift) as excinfo:
        branch_provision(slug="stale", name="Stale", owner_email="o@stale.test", password="pw-1234567890")
    assert "run `python manage.py migrate`" in excinfo.value.message
    assert not schema_exists("stale")


@pytest.mark.django_db
def test_missing_template_is_refused():
    with connection.cursor() as cursor:
        cursor.execute("ALTER SCHEMA _template RENAME TO _template_away")
    with pytest.raises(TemplateMissing):
        branch_provision(slug="notemplate", name="No", owner_email="o@none.test", password="pw-1234567890")
    assert not schema_exists("notemplate")


@pytest.mark.django_db
def test_migrate_keeps_the_template_current():
    with connection.cursor() as cursor:
        cursor.execute("DROP SCHEMA _template CASCADE")
    template_schema_migrate(verbosity=0)
    result = branch_provision(slug="fresh", name="Fresh", owner_email="o@fresh.test", password="pw-1234567890")
    assert result.schema == "fresh"


@pytest.mark.django_db
def test_provision_branch_command_prints_one_json_line(capsys):
    call_command("provision_branch", slug="cmdshop", name="Cmd", owner_email="o@cmd.test", password="pw-1234567890")
    line = capsys.readouterr().out.strip()
    assert "\n" not in line
    payload = json.loads(line)
    assert payload["schema"] == "cmdshop" and payload["domain"] == "cmdshop.localhost"
    assert 0 < payload["seconds"] < 30


@pytest.mark.django_db
def test_provision_branch_command_reports_bad_input_without_traceback():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="slug_invalid"):
        call_command("provision_branch", slug="Bad Slug!", name="Bad", owner_email="o@bad.test")


def test_concurrent_provisioning_of_one_slug_makes_one_branch(live_db):
    results, errors = [], []
    barrier = threading.Barrier(4)

    def provision():
        from django.db import connection as thread_connection

        try:
            barrier.wait()
            results.append(branch_provision(slug="racer", name="Racer", owner_email="o@racer.test", password="pw-1"))
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            thread_connection.close()

    threads = [threading.Thread(target=provision) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors, errors
    assert len({r.branch_id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    assert Branch.objects.filter(slug="racer").count() == 1
    with schema_context("racer"):
        assert User.objects.filter(email="o@racer.test").count() == 1
