"""Manual payment confirmation (补单) through alpha's admin: password-guarded, rate limited, audited,
for the open payment attempt's amount (a surcharge included) or else the order total, and applied
through the normal pipeline (ledger, delivery, e-mail)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.hashers import make_password
from django.core import mail
from django.utils import timezone
from django_tenants.utils import schema_context

from conftest import DEMO
from ledger.models import Transaction
from ledger.services import ledger_check
from orders.models import Order
from orders.services import order_expire
from orders.tasks import order_delivery_email_task
from payments.manual import confirmation_password_set
from payments.models import ManualConfirmation, PaymentAttempt, PaymentChannel, PaymentSettings
from payments.providers.sandbox import SandboxProvider
from payments.services import payment_callback_handle, payment_start
from tests.commerce import pay, place, product_with_codes

pytestmark = pytest.mark.django_db

PASSWORD = "confirm-secret-42"
SETTINGS_URL = "/admin/payments/paymentsettings/"


def _url(order: Order) -> str:
    return f"/admin/orders/order/{order.pk}/confirm-payment/"


def _form(password: str = PASSWORD, reason: str = "Paid per gateway dashboard, callback lost") -> dict:
    return {"confirmation_password": password, "reason": reason, "gateway_reference": "GW-20260101-0042"}


@pytest.fixture
def order() -> Order:
    with schema_context("alpha"):
        return place(product_with_codes(codes=3, price="15.00"))


@pytest.fixture
def password_set():
    with schema_context("alpha"):
        confirmation_password_set(raw_password=PASSWORD)


def _unchanged(order: Order) -> None:
    with schema_context("alpha"):
        fresh = Order.objects.get(pk=order.pk)
        assert (fresh.status, fresh.paid_at) == (Order.Status.PENDING_PAYMENT, None)
        assert not ManualConfirmation.objects.exists()


def test_without_a_confirmation_password_nothing_changes(staff_client, order):
    page = staff_client.get(_url(order)).content.decode()
    assert "No confirmation password is set" in page and "15.00" in page

    response = staff_client.post(_url(order), _form())

    assert response.status_code == 200
    assert "No confirmation password is set for this shop" in response.content.decode()
    _unchanged(order)


def test_a_wrong_password_is_refused_and_changes_nothing(staff_client, order, password_set):
    response = staff_client.post(_url(order), _form(password="not-the-password"))

    assert response.status_code == 200
    assert "The confirmation password is wrong." in response.content.decode()
    _unchanged(order)


def test_a_short_reason_is_refused(staff_client, order, password_set):
    response = staff_client.post(_url(order), _form(reason="ok"))

    assert response.status_code == 200
    _unchanged(order)


def test_the_right_password_delivers_books_audits_and_emails(
    staff_client, order, password_set, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(
        order_delivery_email_task, "delay", lambda order_id: order_delivery_email_task.apply([order_id])
    )
    change = staff_client.get(f"/admin/orders/order/{order.pk}/change/").content.decode()
    assert _url(order) in change

    # A tampered amount in the form is ignored: the amount is always the order total.
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(_url(order), {**_form(), "amount": "0.01"})

    assert response.status_code == 302 and response["Location"] == f"/admin/orders/order/{order.pk}/change/"
    with schema_context("alpha"):
        fresh = Order.objects.get(pk=order.pk)
        assert fresh.status == Order.Status.DELIVERED and fresh.payment_provider == "manual"
        assert fresh.delivery_email_sent_at is not None
        [confirmation] = ManualConfirmation.objects.select_related("staff")
        assert confirmation.staff.email == DEMO["alpha"][1]
        assert confirmation.reason == "Paid per gateway dashboard, callback lost"
        assert confirmation.gateway_reference == "GW-20260101-0042"
        assert (confirmation.amount, confirmation.currency) == (fresh.total, fresh.currency)
        assert ledger_check() == []
        assert fresh.events.filter(to_status=Order.Status.PAID, actor__email=DEMO["alpha"][1]).exists()
    [message] = mail.outbox
    assert message.to == ["buyer@example.test"]

    # Confirming again is refused and adds nothing.
    again = staff_client.post(_url(order), _form())
    assert again.status_code == 200
    with schema_context("alpha"):
        assert ManualConfirmation.objects.count() == 1
    assert _url(order) not in staff_client.get(f"/admin/orders/order/{order.pk}/change/").content.decode()


def test_an_expired_order_can_be_confirmed(staff_client, order, password_set, django_capture_on_commit_callbacks):
    with schema_context("alpha"):
        Order.objects.filter(pk=order.pk).update(expires_at=timezone.now())
        assert order_expire(order_id=order.pk)
    with django_capture_on_commit_callbacks(execute=False):
        response = staff_client.post(_url(order), _form())
    assert response.status_code == 302
    with schema_context("alpha"):
        assert Order.objects.get(pk=order.pk).paid_at is not None
        assert ledger_check() == []


def test_an_order_paid_by_the_gateway_cannot_be_confirmed_again(staff_client, order, password_set):
    with schema_context("alpha"):
        assert pay(order) == (True, "ok")
        paid_at = Order.objects.get(pk=order.pk).paid_at

    response = staff_client.post(_url(order), _form())

    assert response.status_code == 200
    assert "nothing to confirm" in response.content.decode()
    with schema_context("alpha"):
        assert Order.objects.get(pk=order.pk).paid_at == paid_at
        assert not ManualConfirmation.objects.exists()


def test_the_sixth_wrong_password_in_the_window_is_rate_limited(staff_client, order, password_set):
    for _ in range(5):
        body = staff_client.post(_url(order), _form(password="guess")).content.decode()
        assert "The confirmation password is wrong." in body

    body = staff_client.post(_url(order), _form(password="guess")).content.decode()
    assert "Too many wrong confirmation passwords" in body
    # Even the right password is refused until the window has passed.
    body = staff_client.post(_url(order), _form()).content.decode()
    assert "Too many wrong confirmation passwords" in body
    _unchanged(order)


def test_the_confirmation_password_is_set_in_the_admin_and_stored_hashed(staff_client):
    response = staff_client.get(SETTINGS_URL)
    assert response.status_code == 302
    change_url = response["Location"]

    mismatch = staff_client.post(change_url, {"new_password": PASSWORD, "new_password_again": "other-one-1"})
    assert mismatch.status_code == 200 and "The two passwords do not match." in mismatch.content.decode()
    with schema_context("alpha"):
        assert not PaymentSettings.load().confirmation_password

    saved = staff_client.post(change_url, {"new_password": PASSWORD, "new_password_again": PASSWORD})
    assert saved.status_code == 302
    with schema_context("alpha"):
        stored = PaymentSettings.load().confirmation_password
    assert stored and PASSWORD not in stored and stored != make_password(PASSWORD)
    assert stored.startswith(("pbkdf2_", "argon2", "bcrypt", "scrypt", "md5$"))
    assert PASSWORD not in staff_client.get(change_url).content.decode()

    # Saving with both fields empty keeps the stored password.
    assert staff_client.post(change_url, {"new_password": "", "new_password_again": ""}).status_code == 302
    with schema_context("alpha"):
        assert PaymentSettings.load().confirmation_password == stored


def test_confirmation_records_are_read_only_in_the_admin(staff_client):
    assert staff_client.get("/admin/payments/manualconfirmation/").status_code == 200
    assert staff_client.get("/admin/payments/manualconfirmation/add/").status_code == 403


def _balance(code: str):
    from ledger.models import Account

    account = Account.objects.filter(code=code).first()
    return account.natural_balance if account else Decimal("0.00")


def _sandbox_attempt(order: Order, fee_payer: str):
    """The customer chose the sandbox at 2.5 % + 0.30 (0.68 on 15.00) and paid; the gateway never called back."""
    PaymentChannel.objects.create(
        provider="sandbox",
        name="Sandbox",
        is_enabled=True,
        fee_percent=Decimal("2.50"),
        fee_fixed=Decimal("0.30"),
        fee_payer=fee_payer,
    )
    attempt, _url = payment_start(order=order, provider_code="sandbox")
    return attempt


def test_a_surcharge_paid_through_the_channel_is_confirmed_and_booked_with_the_payment(
    staff_client, order, password_set, django_capture_on_commit_callbacks
):
    with schema_context("alpha"):
        attempt = _sandbox_attempt(order, PaymentChannel.FeePayer.CUSTOMER)
        assert (attempt.amount, attempt.fee) == (Decimal("15.68"), Decimal("0.68"))
    page = staff_client.get(_url(order)).content.decode()
    assert "Confirm 15.68" in page

    with django_capture_on_commit_callbacks(execute=False):
        response = staff_client.post(_url(order), {**_form(), "amount": "15.00"})  # an amount is never taken

    assert response.status_code == 302
    with schema_context("alpha"):
        fresh = Order.objects.get(pk=order.pk)
        assert (fresh.status, fresh.total) == (Order.Status.DELIVERED, Decimal("15.00"))
        assert ManualConfirmation.objects.get().amount == Decimal("15.68")
        attempt.refresh_from_db()
        assert attempt.status == PaymentAttempt.Status.SUCCEEDED and attempt.amount == Decimal("15.68")
        # The gateway holds 15.68 for the shop: 15.00 of goods and 0.68 of fee income.
        assert _balance("payment_clearing") == Decimal("15.68")
        assert _balance("payment_fee_income") == Decimal("0.68")
        assert _balance("sales_revenue") == Decimal("15.00")
        assert ledger_check() == []

        # The lost notification turns up after all: already applied, nothing booked twice.
        with django_capture_on_commit_callbacks(execute=False):
            late = SandboxProvider().notification(attempt=attempt)
            assert payment_callback_handle(provider_code="sandbox", data=late) == (True, "ok")
        assert _balance("payment_clearing") == Decimal("15.68")
        assert Transaction.objects.filter(kind="payment_fee").count() == 1
        assert Order.objects.get(pk=order.pk).events.filter(to_status=Order.Status.PAID).count() == 1
        assert ledger_check() == []


def test_an_absorbed_fee_is_booked_as_the_shops_expense_on_manual_confirmation(
    staff_client, order, password_set, django_capture_on_commit_callbacks
):
    with schema_context("alpha"):
        attempt = _sandbox_attempt(order, PaymentChannel.FeePayer.SHOP)
        assert (attempt.amount, attempt.fee) == (Decimal("15.00"), Decimal("0.68"))
    with django_capture_on_commit_callbacks(execute=False):
        assert staff_client.post(_url(order), _form()).status_code == 302
    with schema_context("alpha"):
        assert ManualConfirmation.objects.get().amount == Decimal("15.00")
        assert _balance("payment_fees") == Decimal("0.68")
        assert _balance("payment_clearing") == Decimal("14.32")  # the gateway pays out net of its fee
        assert ledger_check() == []
