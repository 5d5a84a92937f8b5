"""What a branch purchase costs: a fixed number of statements, one write transaction; and the
idempotency guarantees that cheaper path keeps under real concurrency."""

import threading
import time

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import schema_context

from branch_api.provider.models import ApiAuditLog, BranchPurchase, BranchTerms, IdempotencyRecord
from branch_api.provider.services import balance_account_code
from branch_api.provider.tests.conftest import signed_client_for, site_a_product, top_up
from branch_api.provider.tests.test_api import _buy
from cardvault.models import CardReveal
from conftest import _redis_flush_test_keys
from core.sql import wire_messages
from ledger.models import Account
from ledger.services import ledger_check
from orders.models import OrderEvent
from tenants.models import Branch

# Statements of one purchase of vault codes (besides django-tenants' `SET search_path`), whatever
# the quantity: whether the Idempotency-Key was answered before; the balance with any earlier purchase
# of the reference; the variants with visibility and tiers; the sale (savepoint, order with lines,
# events and the purchase row, codes with their assignments, accounts locked, journal rows with
# balances, release); the audit row with the stored answer and the reveal log. The credential, terms, price book
# and webhook endpoints come from memory (branch_api/provider/callers.py).
# 12 here, where the call's own transaction is a savepoint of the test's (10 outside tests).
PURCHASE_QUERIES = 12


def _statements(api, variant, *, quantity: int, reference: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = _buy(api, variant, quantity=quantity, reference=reference, key=f"cost-key-{reference}")
    assert response.status_code == 201, response.json()
    assert len(response.json()["order"]["items"][0]["codes"]) == quantity
    return len([q for q in captured.captured_queries if not (q["sql"] or "").startswith("SET search_path")])


@pytest.mark.django_db
def test_a_purchase_costs_the_same_statements_for_one_code_or_five(alpha_api):
    variant = site_a_product(codes=8, cost="10.00", price="10.00")
    top_up("alpha", "1000.00")
    _buy(alpha_api, variant, reference="warm-up", key="cost-key-warm-up")  # credential "last used", caches
    one = _statements(alpha_api, variant, quantity=1, reference="one")
    five = _statements(alpha_api, variant, quantity=5, reference="five")
    assert one == five == PURCHASE_QUERIES


def _sent(messages: list[str], statement: str) -> int:
    """How often ``statement`` was sent, as a simple query or (in a pipeline) parsed as an unnamed one."""
    return sum(
        1 for m in messages if m.startswith("F") and (f'Query\t "{statement}"' in m or f'Parse\t "" "{statement}"' in m)
    )


def test_a_purchase_commits_once(live_db):
    api = signed_client_for("alpha")
    variant = site_a_product(codes=3, cost="10.00", price="10.00")
    top_up("alpha", "100.00")
    _buy(api, variant, reference="warm-up", key="one-txn-key-0")  # credential "last used"
    with wire_messages() as messages:
        response = _buy(api, variant, quantity=2, reference="one-txn", key="one-txn-key-1")
    assert response.status_code == 201, response.json()
    # Order, codes, ledger, reveal log, stored answer and audit row: one transaction, one commit.
    assert (_sent(messages, "BEGIN"), _sent(messages, "COMMIT"), _sent(messages, "ROLLBACK")) == (1, 1, 0)
    with schema_context("public"):
        order = BranchPurchase.objects.get(reference="one-txn").order
        assert OrderEvent.objects.filter(order=order).count() == 3
        assert CardReveal.objects.filter(order_number=order.number).count() == 2
        assert IdempotencyRecord.objects.filter(key="one-txn-key-1", response_status=201).exists()
        assert ApiAuditLog.objects.filter(idempotency_key="one-txn-key-1", status_code=201).exists()
        assert ledger_check() == []


def _blocked_on_a_lock(timeout: float = 20.0) -> bool:
    """Whether another session of the test database is waiting for a row lock."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT pg_stat_clear_snapshot()")  # read afresh inside our transaction
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return True
            time.sleep(0.05)
    return False


def test_a_duplicate_sent_while_the_first_runs_is_409_and_later_replays(live_db):
    api = signed_client_for("alpha")
    variant = site_a_product(codes=3, cost="10.00", price="10.00")
    top_up("alpha", "100.00")
    answers: dict[str, object] = {}

    def send(name: str, quantity: int) -> None:
        try:
            answers[name] = _buy(api, variant, quantity=quantity, reference="in-flight", key="in-flight-key-1")
        finally:
            connection.close()

    first = threading.Thread(target=send, args=("first", 1))
    with schema_context("public"):
        alpha = Branch.objects.get(slug="alpha")
        # Hold the branch's balance: the first request claims its key, then waits inside its purchase.
        with transaction.atomic():
            Account.objects.select_for_update().get(code=balance_account_code(alpha.pk))
            first.start()
            assert _blocked_on_a_lock()
            for name, quantity in (("duplicate", 1), ("other_body", 2)):
                thread = threading.Thread(target=send, args=(name, quantity))
                thread.start()
                thread.join(30)
        first.join(30)
    assert answers["first"].status_code == 201
    assert (answers["duplicate"].status_code, answers["duplicate"].json()["code"]) == (409, "request_in_flight")
    assert (answers["other_body"].status_code, answers["other_body"].json()["code"]) == (422, "idempotency_key_reused")
    replay = _buy(api, variant, quantity=1, reference="in-flight", key="in-flight-key-1")
    assert replay.status_code == 201 and replay["Idempotent-Replayed"] == "true"
    assert replay.json() == answers["first"].json()
    with schema_context("public"):
        assert BranchPurchase.objects.filter(reference="in-flight").count() == 1


@pytest.mark.django_db
def test_a_key_answered_long_ago_still_replays_after_its_claim_lapsed(alpha_api):
    variant = site_a_product(codes=3)
    top_up("alpha", "100.00")
    first = _buy(alpha_api, variant, reference="old-1", key="old-key-0001")
    assert first.status_code == 201
    _redis_flush_test_keys()  # the in-flight claims (minutes) are gone; the stored answer (days) is not
    again = _buy(alpha_api, variant, reference="old-1", key="old-key-0001")
    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true" and again.json() == first.json()
    other = _buy(alpha_api, variant, quantity=2, reference="old-1", key="old-key-0001")
    assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_reused")
    with schema_context("public"):
        assert BranchPurchase.objects.count() == 1


@pytest.mark.django_db
def test_a_throttled_post_does_not_keep_its_key(alpha_api):
    variant = site_a_product(codes=3)
    top_up("alpha", "100.00")
    with schema_context("public"):
        BranchTerms.objects.filter(branch__slug="alpha").update(rate_per_minute=1)
    assert alpha_api.get("/api/branch/v1/ping").status_code == 200
    throttled = _buy(alpha_api, variant, reference="later-1", key="throttled-key-1")
    assert (throttled.status_code, throttled.json()["code"]) == (429, "throttled")
    with schema_context("public"):
        BranchTerms.objects.filter(branch__slug="alpha").update(rate_per_minute=100)
    assert _buy(alpha_api, variant, reference="later-1", key="throttled-key-1").status_code == 201
