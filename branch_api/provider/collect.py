"""Platform-collect mode: a branch's customers pay through Site A's payment channels.

The branch's checkout lists Site A's channels; choosing one opens a payment attempt in Site A's
schema (purpose ``BRANCH_SALE``, subject a ``BranchSale``) whose callback reaches Site A's domain and
whose return URL is the branch's order page. When Site A confirms the payment (the usual
``payments.services.payment_callback_handle``), it books what it collected to the branch's balance
(payment clearing → branch balance, once per attempt), then marks the branch's order paid in the
branch's schema (a task, after the commit). That starts the usual upstream purchase, which debits the
cost: Site A cost 10, sale 15 → the balance grows by 5, the branch's profit.

In the branch's own ledger the sale is funded by ``prepaid_upstream`` (its money at Site A) instead
of ``payment_clearing``: the customer's 15 arrives there and the purchase at cost takes 10 out again,
so the account mirrors the balance Site A keeps for it. Branch and Site A must share the deployment
(database), because both schemas are written directly; a branch on another server cannot use it.

What keeps the mirror exact:

- A branch order is paid once. A second successful payment of it at Site A (the customer paid twice)
  is not the branch's money and is not credited to its balance: Site A, which owns the channel, owes
  it back to the customer (``branch_sale_duplicates``) and refunds it through the channel when the
  provider can (a task after the commit), otherwise its staff refund it in the gateway and record it;
  the gateway's notification of that refund is booked once, whichever comes first.
- A refund of a collected order in the branch's admin that does not go to the customer's wallet is
  paid from the branch's money at Site A: ``prepaid_upstream`` in the branch and the branch's balance
  at Site A move together, in one database transaction (``collect_refund_book``). A refund Site A's
  gateway reports for a collected payment is applied to the branch's order the same way, once, and
  not again when the branch recorded it by hand (``payments.refunds.collected_refund_notice_apply``);
  one the gateway fails later is booked back on both sides (``collect_refund_reverse_book``).
- A payment staff confirm by hand in the branch (补单) is funded by ``prepaid_upstream`` as well: the
  customer paid through Site A's channel, whose late notification then credits the balance once.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone
from django_tenants.utils import schema_context

from branch_api.provider import errors
from branch_api.provider.models import BranchSale, BranchTerms
from branch_api.provider.services import balance_account_code, branch_balance_account, terms_ensure
from catalog.pricing import money
from ledger.models import Account, Transaction
from ledger.services import Line, account_get_or_create, ledger_post
from tenants.models import Branch

logger = logging.getLogger(__name__)

# The branch ledger account that holds the customer's money while Site A keeps it.
BRANCH_FUNDING_ACCOUNT = "prepaid_upstream"
PROVIDER_PREFIX = "site_a"
# Site A's liability for second payments of a branch order, owed back to the customers who made them.
DUPLICATES_ACCOUNT = "branch_sale_duplicates"


def collect_mode_active() -> bool:
    """Whether the current shop is a branch whose sales Site A collects (read from Site A's terms)."""
    schema = connection.schema_name
    if schema == settings.PUBLIC_SCHEMA_NAME:
        return False
    return BranchTerms.objects.filter(branch__schema_name=schema, mode=BranchTerms.Mode.PLATFORM_COLLECT).exists()


def branch_payment_mode(branch: Branch) -> str:
    """The branch's settlement mode (``BranchTerms.Mode``)."""
    mode = BranchTerms.objects.filter(branch=branch).values_list("mode", flat=True).first()
    return mode or BranchTerms.Mode.OWN_GATEWAY


def branch_mode_set(*, branch: Branch, mode: str) -> BranchTerms:
    """Switch a branch between its own channels and Site A collecting. Collecting needs the branch
    on this deployment and in Site A's currency (Site A credits the sale to a balance in its currency)."""
    if mode not in BranchTerms.Mode.values:
        raise errors.Invalid("Unknown mode.", field="mode")
    if mode == BranchTerms.Mode.PLATFORM_COLLECT and branch.currency != settings.PLATFORM_CURRENCY:
        raise errors.Invalid(
            f"Site A collects in {settings.PLATFORM_CURRENCY}; the branch sells in {branch.currency}.", field="mode"
        )
    terms = terms_ensure(branch)
    terms.mode = mode
    terms.save(update_fields=["mode", "updated"])
    return terms


# --- Branch side (runs in the branch's schema) -------------------------------------------------------


def collect_payment_start(*, order, provider_code: str, request=None):
    """Open the payment of a branch order at Site A; returns (Site A's attempt, absolute pay URL)."""
    from core.urls import shop_base_url

    schema = connection.schema_name
    return_url = shop_base_url() + reverse("order-detail", kwargs={"number": order.number})
    with schema_context(settings.PUBLIC_SCHEMA_NAME):
        branch = Branch.objects.get(schema_name=schema)
        attempt, url = branch_sale_payment_start(
            branch=branch,
            order_number=order.number,
            order_id=order.pk,
            amount=order.total,
            currency=order.currency,
            provider_code=provider_code,
            return_url=return_url,
            request=request,
        )
        if url.startswith("/"):  # a page of Site A's (the sandbox gateway): on Site A's domain
            url = shop_base_url() + url
    return attempt, url


# --- Site A side (public schema) ---------------------------------------------------------------------


def branch_sale_payment_start(
    *,
    branch: Branch,
    order_number: str,
    order_id: int,
    amount: Decimal,
    currency: str,
    provider_code: str,
    return_url: str = "",
    request=None,
):
    """Site A opens a payment attempt for a branch's order through one of its own channels.

    Refused unless the branch is in platform-collect mode and sells in Site A's currency. One
    ``BranchSale`` per branch order; each retry of the payment is a new attempt for it.
    """
    from payments.models import PaymentAttempt
    from payments.services import payment_start_for

    if branch_payment_mode(branch) != BranchTerms.Mode.PLATFORM_COLLECT:
        raise errors.CollectNotEnabled()
    amount = money(amount)
    if currency != settings.PLATFORM_CURRENCY:
        raise errors.Invalid(f"Site A collects in {settings.PLATFORM_CURRENCY} only.", field="currency")
    fields = {"order_id": order_id, "amount": amount, "currency": currency, "return_url": return_url}
    try:
        with transaction.atomic():
            sale, _created = BranchSale.objects.get_or_create(branch=branch, order_number=order_number, defaults=fields)
    except IntegrityError:  # opened concurrently
        sale = BranchSale.objects.get(branch=branch, order_number=order_number)
    if (sale.order_id, sale.amount, sale.currency) != (order_id, amount, currency):
        raise errors.Invalid("This order was opened for payment with another amount.", field="amount")
    return payment_start_for(
        purpose=PaymentAttempt.Purpose.BRANCH_SALE,
        subject_id=sale.pk,
        amount=amount,
        currency=currency,
        provider_code=provider_code,
        request=request,
        return_url=return_url,
    )


def branch_sale_collect(*, attempt, amount: Decimal, currency: str) -> BranchSale:
    """Book a confirmed payment of a branch sale (inside the callback's transaction, attempt locked).

    The first: payment clearing → the branch's balance, once per attempt; the branch's order is marked
    paid by a task once this commits. A later one (another attempt of an order already collected: the
    customer paid twice) is owed back to the customer instead — payment clearing →
    ``branch_sale_duplicates`` — and refunded through the channel by a task where it can be; the
    branch's order was paid once and its ledger books one payment, so its balance is not touched.
    """
    from branch_api.provider.tasks import branch_sale_duplicate_refund_task, branch_sale_settle_task
    from orders.errors import OrderStateError

    sale = BranchSale.objects.select_for_update().select_related("branch").get(pk=attempt.subject_id)
    if money(amount) != sale.amount or currency != sale.currency:
        raise OrderStateError("The paid amount does not match the branch order.", code="amount_mismatch")
    if sale.collected_at is not None:
        _duplicates_account()
        ledger_post(
            kind="branch_sale",
            idempotency_key=f"branch-sale-duplicate:{attempt.pk}",
            reference=sale.order_number,
            memo=f"second payment of {sale.branch.slug}:{sale.order_number} via {attempt.provider}, owed back"[:255],
            lines=[Line("payment_clearing", sale.amount), Line(DUPLICATES_ACCOUNT, -sale.amount)],
        )
        BranchSale.objects.filter(pk=sale.pk).update(duplicate_owed=F("duplicate_owed") + sale.amount)
        attempt_id = attempt.pk
        transaction.on_commit(lambda: branch_sale_duplicate_refund_task.delay(attempt_id))
        return sale
    branch_balance_account(sale.branch)
    ledger_post(
        kind="branch_sale",
        idempotency_key=f"branch-sale:{attempt.pk}",
        reference=sale.order_number,
        memo=f"sale of {sale.branch.slug} via {attempt.provider} {attempt.external_id}"[:255],
        lines=[Line("payment_clearing", sale.amount), Line(balance_account_code(sale.branch_id), -sale.amount)],
    )
    if sale.collected_at is None:
        sale.collected_at = timezone.now()
        sale.save(update_fields=["collected_at"])
    reference = f"{attempt.provider}:{attempt.external_id}"
    transaction.on_commit(lambda: branch_sale_settle_task.delay(sale.pk, reference))
    return sale


def _duplicates_account():
    return account_get_or_create(
        DUPLICATES_ACCOUNT,
        name="Second payments of branch orders, owed to customers",
        kind=Account.Kind.LIABILITY,
        may_go_negative=False,
    )


def branch_sale_duplicates_open(sale: BranchSale) -> list:
    """The second payments of ``sale`` still owed to the customer (Site A's schema)."""
    from payments.models import PaymentAttempt

    attempts = list(
        PaymentAttempt.objects.filter(
            purpose=PaymentAttempt.Purpose.BRANCH_SALE, subject_id=sale.pk, status=PaymentAttempt.Status.SUCCEEDED
        ).order_by("pk")
    )
    keys = set(
        Transaction.objects.filter(
            idempotency_key__in=[f"branch-sale-duplicate{part}:{a.pk}" for a in attempts for part in ("", "-refund")]
        ).values_list("idempotency_key", flat=True)
    )
    return [
        a
        for a in attempts
        if f"branch-sale-duplicate:{a.pk}" in keys and f"branch-sale-duplicate-refund:{a.pk}" not in keys
    ]


def branch_sale_duplicate_refund(*, attempt_id: int, outside: bool = False, staff=None) -> bool:
    """Give a second payment of a branch order back to the customer; True once it is refunded.

    Through the channel's refund API when the provider has one (outside any transaction; Site A's own
    idempotency key per attempt, so a retried call never refunds twice), or, with ``outside``, recorded
    as refunded by Site A's staff in the gateway's dashboard. Books ``branch_sale_duplicates`` →
    payment clearing once (``branch-sale-duplicate-refund:<attempt id>``).
    """
    from payments.duplicates import channel_refund
    from payments.models import PaymentAttempt

    attempt = PaymentAttempt.objects.get(pk=attempt_id, purpose=PaymentAttempt.Purpose.BRANCH_SALE)
    sale = BranchSale.objects.get(pk=attempt.subject_id)
    if attempt not in branch_sale_duplicates_open(sale):
        return Transaction.objects.filter(idempotency_key=f"branch-sale-duplicate-refund:{attempt.pk}").exists()
    how = f"refunded outside by staff #{getattr(staff, 'pk', '?')}"
    if not outside:
        # None: no refund API (epay, configurable gateways; Site A's staff refund it) or not now.
        how = channel_refund(
            attempt=attempt, amount=sale.amount, idempotency_key=f"branch-sale-duplicate-{attempt.token}"
        )
        if how is None:
            return False
    _duplicate_refund_book(attempt, sale, how)
    return True


def branch_sale_duplicate_is(attempt) -> bool:
    """Whether ``attempt`` was booked as a second payment of its branch sale (owed back, or given back)."""
    return Transaction.objects.filter(idempotency_key=f"branch-sale-duplicate:{attempt.pk}").exists()


def branch_sale_duplicate_refund_notice_apply(*, attempt, notice) -> None:
    """A gateway's signed notification about the refund of a second payment of a branch sale: the
    refund our task made (booked already, or booked here first; the task then books nothing) or one
    Site A's staff made in the gateway's dashboard. Books ``branch_sale_duplicates`` → payment
    clearing once, like ``branch_sale_duplicate_refund``. A refund that failed moved no money (the
    payment stays owed); anything but the whole sale amount is refused, for staff to look at."""
    from payments.errors import CallbackRejected
    from payments.refunds import GATEWAY_ACCEPTED

    if notice.status not in GATEWAY_ACCEPTED:
        logger.warning("refund %s of branch sale payment %s: %s", notice.gateway_refund_id, attempt.pk, notice.status)
        return
    sale = BranchSale.objects.get(pk=attempt.subject_id)
    if notice.amount != sale.amount:
        raise CallbackRejected("a second payment is refunded whole", code="amount_mismatch")
    _duplicate_refund_book(attempt, sale, f"refunded via {attempt.provider} {notice.gateway_refund_id}")


def _duplicate_refund_book(attempt, sale: BranchSale, how: str) -> None:
    """``branch_sale_duplicates`` → payment clearing for a second payment, once (our refund task and the
    gateway's notification of the same refund may both get here; the sale's row lock orders them)."""
    with transaction.atomic():
        BranchSale.objects.select_for_update().get(pk=sale.pk)
        if Transaction.objects.filter(idempotency_key=f"branch-sale-duplicate-refund:{attempt.pk}").exists():
            return
        ledger_post(
            kind="refund",
            idempotency_key=f"branch-sale-duplicate-refund:{attempt.pk}",
            reference=sale.order_number,
            memo=f"second payment of {sale.order_number} {how}"[:255],
            lines=[Line(DUPLICATES_ACCOUNT, sale.amount), Line("payment_clearing", -sale.amount)],
        )
        BranchSale.objects.filter(pk=sale.pk).update(duplicate_owed=F("duplicate_owed") - sale.amount)


def collect_refund_book(*, order, amount: Decimal, token: str, reason: str) -> str:
    """Site A's side of a branch's refund of a collected order that does not go to the customer's
    wallet: the branch's balance at Site A pays it (balance → Site A's payment clearing, Site A gives
    the money back through its channel). Runs in the branch's schema inside the refund's transaction;
    returns the branch account to credit (``prepaid_upstream``). ``InsufficientFunds`` when the
    balance does not cover it (nothing is written)."""
    return _branch_refund_post(order=order, amount=amount, key="branch-refund", token=token, back=False,
                               memo=f"paid from its balance ({reason})")  # fmt: skip


def collect_refund_reverse_book(*, order, amount: Decimal, token: str, reason: str) -> str:
    """Book back Site A's side of a refund of a collected order that Site A's gateway failed after it
    had been booked (``collect_refund_book`` mirrored: the money is in Site A's payment clearing again
    and back in the branch's balance). Runs in the branch's schema inside the caller's transaction;
    returns the branch account to debit (``prepaid_upstream``)."""
    return _branch_refund_post(order=order, amount=amount, key="branch-refund-reversed", token=token, back=True,
                               memo=f"failed at the gateway ({reason}): back to its balance")  # fmt: skip


def _branch_refund_post(*, order, amount: Decimal, key: str, token: str, back: bool, memo: str) -> str:
    """Post a refund of a collected order from the branch's balance at Site A to Site A's payment
    clearing (``back``: the other way round), from the branch's schema."""
    schema = connection.schema_name
    with schema_context(settings.PUBLIC_SCHEMA_NAME):
        branch = Branch.objects.get(schema_name=schema)
        paid = -amount if back else amount  # what the branch's balance pays
        ledger_post(
            kind="refund",
            idempotency_key=f"{key}:{branch.pk}:{token}",
            reference=order.number,
            memo=f"refund of {branch.slug}:{order.number} {memo}"[:255],
            lines=[Line(balance_account_code(branch.pk), paid), Line("payment_clearing", -paid)],
        )
    return BRANCH_FUNDING_ACCOUNT


def branch_sale_settle(*, sale_id: int, payment_reference: str = "") -> bool:
    """Mark the branch's order paid in the branch's schema (idempotent: a paid order stays as it is).

    Returns True when the order is paid. The upstream purchase it triggers runs as its own task in the
    branch's schema after this commits (no network I/O in here).
    """
    from orders.errors import OrderStateError
    from orders.services import order_mark_paid

    with schema_context(settings.PUBLIC_SCHEMA_NAME):
        sale = BranchSale.objects.select_related("branch").get(pk=sale_id)
    if sale.collected_at is None:
        return False
    if sale.settled_at is not None:
        return True
    try:
        with schema_context(sale.branch.schema_name):
            order_mark_paid(
                order_id=sale.order_id,
                amount=sale.amount,
                currency=sale.currency,
                provider=PROVIDER_PREFIX,
                payment_reference=(payment_reference or sale.order_number)[:100],
                funding_account=BRANCH_FUNDING_ACCOUNT,
            )
    except OrderStateError as exc:
        # Collected, credited, but the order cannot take it (e.g. its lines changed): staff settle it.
        logger.warning("branch sale %s not settled: %s", sale.pk, exc.code)
        with schema_context(settings.PUBLIC_SCHEMA_NAME):
            BranchSale.objects.filter(pk=sale.pk).update(last_error=f"{exc.code}: {exc.message}"[:255])
        return False
    with schema_context(settings.PUBLIC_SCHEMA_NAME):
        BranchSale.objects.filter(pk=sale.pk, settled_at__isnull=True).update(settled_at=timezone.now(), last_error="")
    return True


def branch_sales_settle_due(*, limit: int = 200) -> int:
    """Periodic backstop: settle collected sales whose task was lost. Returns how many were settled."""
    with schema_context(settings.PUBLIC_SCHEMA_NAME):
        due = list(
            BranchSale.objects.filter(collected_at__isnull=False, settled_at__isnull=True, last_error="")
            .order_by("collected_at")
            .values_list("pk", flat=True)[:limit]
        )
    return sum(branch_sale_settle(sale_id=pk) for pk in due)
