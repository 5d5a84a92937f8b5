"""A customer who pays one order twice: the second payment is booked as owed back to them, refunded
through the channel where it can be, and otherwise settled by staff from the admin."""

from decimal import Decimal

import pytest
from django_tenants.utils import schema_context

from ledger.models import Account, Transaction
from ledger.services import ledger_check
from orders.models import Order
from payments.duplicates import OWED_ACCOUNT
from payments.models import PaymentAttempt
from payments.providers.sandbox import SandboxProvider
from payments.services import payment_callback_handle, payment_start
from payments.tasks import duplicate_payment_refund_task
from payments.tests.test_manual_confirmation import PASSWORD, _form, _url
from tests.commerce import place, product_with_codes

pytestmark = pytest.mark.django_db

ATTEMPTS_URL = "/admin/payments/paymentattempt/"


def _two_payments_of(order: Order) -> tuple[dict, dict]:
    """Two attempts at one order (two tabs), each paid on the gateway's page."""
    first, _ = payment_start(order=order, provider_code="sandbox")
    second, _ = payment_start(order=order, provider_code="sandbox")
    return SandboxProvider().notification(attempt=first), SandboxProvider().notification(attempt=second)


def _owed() -> Decimal:
    account = Account.objects.filter(code=OWED_ACCOUNT).first()
    return account.natural_balance if account else Decimal("0.00")


def _clearing() -> Decimal:
    return Account.objects.get(code="payment_clearing").natural_balance


def test_a_second_payment_is_owed_back_and_refunded_through_the_channel(django_capture_on_commit_callbacks):
    with schema_context("alpha"):
        order = place(product_with_codes(codes=3, price="15.00"))
        first, second = _two_payments_of(order)
        with django_capture_on_commit_callbacks(execute=True):
            assert payment_callback_handle(provider_code="sandbox", data=first) == (True, "ok")
        before = _clearing()
        with django_capture_on_commit_callbacks(execute=False) as queued:
            assert payment_callback_handle(provider_code="sandbox", data=second) == (True, "ok")
        order.refresh_from_db()
        # One order, one delivery, one payment booked as the order's; the second one is the customer's.
        assert order.status == Order.Status.DELIVERED
        assert order.lines.get().assignments.count() == 1
        assert Transaction.objects.filter(kind="order_payment", reference=order.number).count() == 1
        assert _owed() == Decimal("15.00") and _clearing() == before + Decimal("15.00")
        assert order.events.filter(message__contains="owed back to the customer").count() == 1
        assert len(queued) == 1  # the refund task, queued once the payment is booked
        attempt = PaymentAttempt.objects.get(token=second["token"])
        assert duplicate_payment_refund_task(attempt.pk) is True  # as the worker runs it
        assert duplicate_payment_refund_task(attempt.pk) is True  # a retried task refunds nothing more
        assert _owed() == Decimal("0.00") and _clearing() == before
        refund = Transaction.objects.get(idempotency_key__startswith="duplicate-payment-refund:")
        assert "refunded via sandbox SBXR" in refund.memo
        # A retried notification of either payment changes nothing more.
        assert payment_callback_handle(provider_code="sandbox", data=second) == (True, "ok")
        assert payment_callback_handle(provider_code="sandbox", data=first) == (True, "ok")
        assert Transaction.objects.filter(idempotency_key__startswith="duplicate-payment").count() == 2
        assert ledger_check() == []


def test_after_a_manual_confirmation_staff_decide_what_the_late_payment_was(
    staff_client, django_capture_on_commit_callbacks
):
    """Staff confirmed the order by hand; then a payment of one of its attempts is notified. It may be
    the very payment they confirmed, so nothing is refunded by itself: staff settle it in the admin."""
    with schema_context("alpha"):
        from payments.manual import confirmation_password_set

        confirmation_password_set(raw_password=PASSWORD)
        order = place(product_with_codes(codes=3, price="15.00"))
        other, latest = _two_payments_of(order)
    assert staff_client.post(_url(order), _form()).status_code == 302  # confirms the latest attempt
    with schema_context("alpha"):
        before = _clearing()
        # The customer had paid in the other tab: owed, but not refunded by itself.
        with django_capture_on_commit_callbacks(execute=False) as queued:
            assert payment_callback_handle(provider_code="sandbox", data=other) == (True, "ok")
        assert queued == []
        assert _owed() == Decimal("15.00")
        attempt = PaymentAttempt.objects.get(token=other["token"])
        listed = staff_client.get(f"{ATTEMPTS_URL}?owed_back=open")
        assert listed.status_code == 200 and _row(attempt) in listed.content.decode()
        assert _row(PaymentAttempt.objects.get(token=latest["token"])) not in listed.content.decode()
    answer = staff_client.post(
        ATTEMPTS_URL,
        {"action": "second_payment_confirmed_by_hand", "_selected_action": [attempt.pk, latest_pk(latest)]},
    )
    assert answer.status_code == 302
    with schema_context("alpha"):
        assert _owed() == Decimal("0.00") and _clearing() == before
        settled = Transaction.objects.get(idempotency_key=f"duplicate-payment-refund:{attempt.pk}")
        assert "was the payment confirmed by hand" in settled.memo
        assert _row(attempt) not in staff_client.get(f"{ATTEMPTS_URL}?owed_back=open").content.decode()
        assert ledger_check() == []


def _row(attempt: PaymentAttempt) -> str:
    return f"{ATTEMPTS_URL}{attempt.pk}/change/"


def latest_pk(notification: dict) -> int:
    with schema_context("alpha"):
        return PaymentAttempt.objects.get(token=notification["token"]).pk


def test_a_second_payment_refunded_in_the_dashboard_is_recorded_once(staff_client, settings):
    with schema_context("alpha"):
        order = place(product_with_codes(codes=3, price="15.00"))
        first, second = _two_payments_of(order)
        assert payment_callback_handle(provider_code="sandbox", data=first) == (True, "ok")
        assert payment_callback_handle(provider_code="sandbox", data=second) == (True, "ok")
        attempt = PaymentAttempt.objects.get(token=second["token"])
        assert _owed() == Decimal("15.00")
    for _ in range(2):  # a double submit records it once
        answer = staff_client.post(
            ATTEMPTS_URL, {"action": "second_payment_refunded_outside", "_selected_action": [attempt.pk]}
        )
        assert answer.status_code == 302
    with schema_context("alpha"):
        assert _owed() == Decimal("0.00")
        assert Transaction.objects.filter(idempotency_key=f"duplicate-payment-refund:{attempt.pk}").count() == 1
        assert ledger_check() == []
