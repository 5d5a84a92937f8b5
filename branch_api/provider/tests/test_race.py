"""Two branches racing for Site A's last codes through the signed API, on real threads."""

from decimal import Decimal

from django_tenants.utils import schema_context

from branch_api.provider.services import balance_account_code
from branch_api.provider.tests.conftest import signed_client_for, site_a_product, top_up
from branch_api.provider.tests.test_api import _buy
from cardvault.models import CardAssignment
from ledger.models import Account
from ledger.services import ledger_check
from tenants.models import Branch
from tests.concurrency import at_once


def test_two_branches_racing_for_the_last_codes_never_oversell(live_db):
    alpha_api, beta_api = signed_client_for("alpha"), signed_client_for("beta")
    variant = site_a_product(codes=5, visible_to=("alpha", "beta"))
    top_up("alpha", "500.00")
    top_up("beta", "500.00")
    results = []

    def buyer(api, name, i):
        response = _buy(api, variant, reference=f"{name}-{i}", key=f"race-key-{name}-{i}")
        results.append(response.status_code)

    at_once(buyer, [(api, name, i) for i in range(6) for api, name in ((alpha_api, "alpha"), (beta_api, "beta"))])
    assert sorted(results) == [201] * 5 + [409] * 7
    with schema_context("public"):
        assignments = CardAssignment.objects.filter(card__variant=variant)
        assert assignments.count() == 5 and assignments.values("card").distinct().count() == 5
        spent = sum(
            Decimal("500.00") - Account.objects.get(code=balance_account_code(b.pk)).natural_balance
            for b in Branch.objects.filter(slug__in=["alpha", "beta"])
        )
        assert spent == Decimal("60.00")  # 5 codes at 12.00
        assert ledger_check() == []


def test_one_reference_sent_at_once_under_different_keys_buys_once(live_db):
    """A branch retrying with a new Idempotency-Key while the first request still runs: the reference
    alone must keep it to one purchase, and every answer names that purchase."""
    from branch_api.provider.models import BranchPurchase

    api = signed_client_for("alpha")
    variant = site_a_product(codes=8)
    top_up("alpha", "500.00")
    answers = []

    def buyer(i):
        response = _buy(api, variant, reference="same-reference", key=f"same-reference-key-{i}")
        answers.append((response.status_code, response.json()["order"]["number"]))

    at_once(buyer, [(i,) for i in range(6)])
    assert sorted(status for status, _ in answers) == [200] * 5 + [201]
    assert len({number for _, number in answers}) == 1
    with schema_context("public"):
        assert BranchPurchase.objects.filter(reference="same-reference").count() == 1
        assert CardAssignment.objects.filter(card__variant=variant).count() == 1
        alpha = Branch.objects.get(slug="alpha")
        assert Account.objects.get(code=balance_account_code(alpha.pk)).natural_balance == Decimal("488.00")
        assert ledger_check() == []
