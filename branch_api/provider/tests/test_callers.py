"""The API's callers (credential, branch, terms, price book, webhook endpoints) are kept in memory
between calls: a change made anywhere applies to the very next call, in this process and in others."""

from django.db import connection
from django_tenants.utils import schema_context

from branch_api.provider import callers
from branch_api.provider.models import BranchTerms
from branch_api.provider.tests.test_api import PING, _error
from core.redis import get_redis
from tenants.models import Branch


def _allowlist_behind_the_orms_back(value: str) -> None:
    """Change alpha's IP allowlist the way another server's process would be seen from here: the row
    changes, and nothing in this process hears of it."""
    with schema_context("public"), connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {BranchTerms._meta.db_table} SET ip_allowlist = %s WHERE branch_id = %s",
            [value, Branch.objects.get(slug="alpha").pk],
        )


def test_a_change_announced_by_another_process_applies_to_the_next_call(alpha_api):
    assert alpha_api.get(PING).status_code == 200
    _allowlist_behind_the_orms_back("203.0.113.0/24")
    # Remembered: the call reads neither the credential nor the terms again...
    assert alpha_api.get(PING).status_code == 200
    # ...until the version moves, which is all another process's callers_changed() does here.
    get_redis().incr(callers._version_key())
    assert _error(alpha_api.get(PING)) == (403, "ip_not_allowed")


def test_a_change_nobody_announced_applies_within_the_maximum_age(alpha_api, monkeypatch):
    assert alpha_api.get(PING).status_code == 200
    _allowlist_behind_the_orms_back("203.0.113.0/24")
    monkeypatch.setattr(callers, "MAX_AGE_SECONDS", 0.0)
    assert _error(alpha_api.get(PING)) == (403, "ip_not_allowed")


def test_saves_and_bulk_updates_are_announced(alpha_api):
    assert alpha_api.get(PING).status_code == 200
    with schema_context("public"):
        terms = BranchTerms.objects.get(branch__slug="alpha")
        terms.ip_allowlist = "203.0.113.0/24"
        terms.save()
    assert _error(alpha_api.get(PING)) == (403, "ip_not_allowed")
    with schema_context("public"):
        BranchTerms.objects.filter(pk=terms.pk).update(ip_allowlist="")
    assert alpha_api.get(PING).status_code == 200
    with schema_context("public"):
        Branch.objects.filter(slug="alpha").update(status=Branch.Status.SUSPENDED)
    assert _error(alpha_api.get(PING)) == (403, "branch_suspended")


def test_bookkeeping_writes_keep_what_is_remembered(alpha_api):
    """The credential's "last used" and a branch's terms' "updated" stamp change nothing a call uses:
    writing them must not make every process read its callers again."""
    assert alpha_api.get(PING).status_code == 200
    before = callers.callers_version()
    with schema_context("public"):
        from django.utils import timezone

        from branch_api.provider.models import ApiCredential

        ApiCredential.objects.filter(branch__slug="alpha").update(last_used_at=timezone.now())
        BranchTerms.objects.filter(branch__slug="alpha").update(updated=timezone.now())
        BranchTerms.objects.get(branch__slug="alpha").save(update_fields=["updated"])
    assert callers.callers_version() == before
    with schema_context("public"):
        BranchTerms.objects.filter(branch__slug="alpha").update(rate_per_minute=5)
    assert callers.callers_version() != before


def test_a_branchs_own_categories_changing_keeps_what_is_remembered(alpha_api):
    """Categories and price lists exist in every branch's schema too, and a branch's sync updates them
    all the time: that must not make Site A's processes read their callers again."""
    from catalog.models import Category

    assert alpha_api.get(PING).status_code == 200
    before = callers.callers_version()
    with schema_context("alpha"):
        Category.objects.create(name="Branch only", slug="branch-only")
        Category.objects.filter(slug="branch-only").update(name="Branch only, renamed")
        Category.objects.filter(slug="branch-only").delete()
    assert callers.callers_version() == before
    with schema_context("public"):
        Category.objects.create(name="Site A", slug="site-a-new")
    assert callers.callers_version() != before
