"""Financial report of the branch network for Site A: per branch and period."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.db.models import Q, Sum

from branch_api.provider.services import balance_account_code
from ledger.models import Entry
from tenants.models import Branch

ZERO = Decimal("0.00")


@dataclass
class BranchPeriodRow:
    branch: Branch
    opening_balance: Decimal
    top_ups: Decimal
    collected: Decimal  # the branch's sales Site A collected for it (platform-collect mode)
    purchases: Decimal  # what the branch bought from Site A, at its cost
    other: Decimal
    closing_balance: Decimal
    site_a_cost: Decimal  # Site A's own cost of the codes it sold to the branch
    site_a_margin: Decimal


def branch_network_report(*, start: date, end: date) -> list[BranchPeriodRow]:
    """Per branch: balance movements between ``start`` and ``end`` (inclusive) and Site A's margin.

    Balances are read on the natural side (what the branch can spend); every figure comes from ledger
    entries, so the report always agrees with the balances.
    """
    rows = []
    for branch in Branch.objects.exclude(schema_name="public").order_by("slug"):
        entries = Entry.objects.filter(account__code=balance_account_code(branch.pk))
        opening = -(entries.filter(created__date__lt=start).aggregate(t=Sum("amount"))["t"] or ZERO)
        period = entries.filter(created__date__gte=start, created__date__lte=end)
        by_kind = dict(period.values_list("transaction__kind").annotate(t=Sum("amount")))
        top_ups = -(by_kind.pop("top_up", None) or ZERO)
        collected = -(by_kind.pop("branch_sale", None) or ZERO)
        purchases = by_kind.pop("order_payment", None) or ZERO
        other = -sum(by_kind.values(), ZERO)
        order_ids = period.filter(transaction__kind="order_payment").values("order_id")
        cost = (
            Entry.objects.filter(Q(order_id__in=order_ids), account__code="cost_of_goods").aggregate(t=Sum("amount"))[
                "t"
            ]
            or ZERO
        )
        rows.append(
            BranchPeriodRow(
                branch=branch,
                opening_balance=opening,
                top_ups=top_ups,
                collected=collected,
                purchases=purchases,
                other=other,
                closing_balance=opening + top_ups + collected - purchases + other,
                site_a_cost=cost,
                site_a_margin=purchases - cost,
            )
        )
    return rows
