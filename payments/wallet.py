"""Customer wallets: a prepaid balance per logged-in customer, kept in the shop's ledger.

A wallet is the ledger account ``wallet:<user id>`` (a liability of the shop that may not go below
zero on its natural side). It is credited by a top-up paid through another provider (a
``WALLET_TOP_UP`` payment attempt, applied once by ``payment_callback_handle``) and debited by
``wallet_pay``, which marks an order paid with the wallet as its funding account; the ledger's
non-negative check is what refuses an overdraft, even under concurrent spending.
"""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from catalog.pricing import money
from core.errors import DomainError
from ledger.errors import InsufficientFunds
from ledger.models import Account, Entry
from ledger.services import Line, account_get_or_create, ledger_post, shop_currency
from orders.errors import OrderNotPayable
from orders.models import Order
from orders.services import order_mark_paid
from payments.models import PaymentAttempt

PROVIDER_CODE = "balance"
MAX_TOP_UP = Decimal("100000")


class InsufficientWalletBalance(DomainError):
    code = "insufficient_wallet_balance"
    default_message = "insufficient wallet balance"


class WalletNotAllowed(DomainError):
    code = "wallet_not_allowed"
    default_message = "Only the order's own customer may pay it from their wallet."


def wallet_account_code(user_id: int) -> str:
    return f"wallet:{user_id}"


def wallet_account(user) -> Account:
    """The customer's wallet account, created (empty) on first use."""
    return account_get_or_create(
        wallet_account_code(user.pk),
        name=f"Wallet of user {user.pk}",
        kind=Account.Kind.LIABILITY,
        may_go_negative=False,
        owner_type="user",
        owner_id=str(user.pk),
    )


def wallet_balance(user) -> Decimal:
    """What the customer can spend (0.00 for a guest or a customer without a wallet yet)."""
    if user is None or not user.is_authenticated:
        return Decimal("0.00")
    account = Account.objects.filter(code=wallet_account_code(user.pk)).first()
    return account.natural_balance if account else Decimal("0.00")


def wallet_movements(user, *, limit: int = 100):
    """The wallet's ledger entries, newest first; ``amount`` is signed from the customer's side."""
    if user is None or not user.is_authenticated:
        return []
    entries = (
        Entry.objects.filter(account__code=wallet_account_code(user.pk))
        .select_related("transaction")
        .order_by("-created", "-pk")[:limit]
    )
    return [
        {
            "created": entry.created,
            "kind": entry.transaction.get_kind_display(),
            "reference": entry.transaction.reference,
            "amount": -entry.amount,  # a credit to the liability is money in the wallet
        }
        for entry in entries
    ]


MIN_ADJUSTMENT_REASON = 5


def wallet_adjust(*, user_id: int, amount: Decimal, reason: str, staff, request_key: str) -> None:
    """Credit (positive ``amount``) or debit (negative) a customer's wallet by hand, with a reason.

    Booked against the shop's ``wallet_adjustments`` expense; the staff member and reason are kept in
    the journal memo. ``request_key`` (one per adjustment form) makes a resubmitted form a no-op; a
    debit larger than the balance is refused by the ledger and changes nothing.
    """
    try:
        amount = money(Decimal(str(amount)))
    except ArithmeticError:
        raise DomainError(_("Enter a valid amount."), field="amount", code="invalid") from None
    if amount == 0 or abs(amount) > MAX_TOP_UP:
        raise DomainError(
            _("The amount must be non-zero and at most %(max)s either way.") % {"max": MAX_TOP_UP},
            field="amount",
            code="invalid",
        )
    reason = (reason or "").strip()
    if len(reason) < MIN_ADJUSTMENT_REASON:
        raise DomainError(_("Say why (at least 5 characters)."), field="reason", code="invalid")
    user = get_user_model().objects.filter(pk=user_id).first()
    if user is None:
        raise DomainError(_("No such customer."), code="not_found")
    wallet = wallet_account(user)
    who = getattr(staff, "email", "") or str(staff)
    try:
        ledger_post(
            kind="adjustment",
            idempotency_key=f"wallet-adjust:{request_key}",
            reference=wallet.code,
            memo=f"{who}: {reason}"[:255],
            lines=[Line("wallet_adjustments", amount), Line(wallet.code, -amount)],
        )
    except InsufficientFunds:
        raise InsufficientWalletBalance(_("The wallet holds less than that.")) from None


def wallet_top_up_start(*, user, amount, provider_code: str = "sandbox", request=None) -> tuple[PaymentAttempt, str]:
    """Open a top-up paid through another provider; returns the attempt and where to pay it."""
    from payments.services import payment_start_for

    if user is None or not user.is_authenticated:
        raise WalletNotAllowed(_("Log in to top up your wallet."))
    if provider_code == PROVIDER_CODE:
        raise DomainError(_("A wallet cannot be topped up from itself."), field="amount", code="invalid")
    try:
        amount = money(Decimal(str(amount)))
    except ArithmeticError:
        raise DomainError(_("Enter a valid amount."), field="amount", code="invalid") from None
    if amount <= 0 or amount > MAX_TOP_UP:
        raise DomainError(
            _("The amount must be between 0.01 and %(max)s.") % {"max": MAX_TOP_UP}, field="amount", code="invalid"
        )
    wallet_account(user)
    return payment_start_for(
        purpose=PaymentAttempt.Purpose.WALLET_TOP_UP,
        subject_id=user.pk,
        amount=amount,
        currency=shop_currency(),
        provider_code=provider_code,
        request=request,
    )


def wallet_top_up_apply(*, attempt: PaymentAttempt, amount: Decimal, currency: str, payment_reference: str) -> None:
    """Credit a paid top-up to the wallet exactly once (the attempt is the idempotency key)."""
    from orders.errors import OrderStateError

    if money(amount) != attempt.goods_amount or currency != attempt.currency:
        raise OrderStateError("The paid amount does not match the top-up.", code="amount_mismatch")
    account = Account.objects.filter(code=wallet_account_code(attempt.subject_id)).first()
    if account is None:  # the wallet is normally created when the top-up starts
        account = account_get_or_create(
            wallet_account_code(attempt.subject_id),
            name=f"Wallet of user {attempt.subject_id}",
            kind=Account.Kind.LIABILITY,
            may_go_negative=False,
            owner_type="user",
            owner_id=str(attempt.subject_id),
        )
    ledger_post(
        kind="top_up",
        idempotency_key=f"wallet-top-up:{attempt.pk}",
        reference=payment_reference[:64],
        memo=f"wallet top-up of user {attempt.subject_id}",
        lines=[Line("payment_clearing", attempt.goods_amount), Line(account.code, -attempt.goods_amount)],
    )


def wallet_pay(*, order: Order, user) -> Order:
    """Pay an order from its own customer's wallet, all or nothing.

    The order is marked paid (and delivered) with the wallet as the funding account in one
    transaction; an overdraft is refused by the ledger and then nothing has changed.
    """
    if user is None or not user.is_authenticated or order.customer_id != user.pk:
        raise WalletNotAllowed()
    wallet = wallet_account(user)
    try:
        with transaction.atomic():
            order = Order.objects.select_for_update().get(pk=order.pk)
            if order.status != Order.Status.PENDING_PAYMENT or order.expires_at <= timezone.now():
                raise OrderNotPayable()
            return order_mark_paid(
                order_id=order.pk,
                amount=order.total,
                currency=order.currency,
                provider=PROVIDER_CODE,
                payment_reference=f"{wallet.code}:{order.number}",
                funding_account=wallet.code,
            )
    except InsufficientFunds:
        raise InsufficientWalletBalance(_("insufficient wallet balance")) from None
