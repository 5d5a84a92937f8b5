"""Refunds: to Stripe through its API (the local fake of test_stripe), to the sandbox, to the wallet or
recorded as done outside; never more than was paid, even under concurrent attempts; delivered codes
flagged, the order's status and history moved, the customer told; the admin pages end to end."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import connection
from django_tenants.utils import schema_context

from cardvault.models import Card, CardAssignment
from catalog.models import Variant
from conftest import DEMO, host_client
from ledger.models import Account, Transaction
from ledger.services import ledger_check
from orders.models import Order
from orders.services import CartItem, order_mark_paid, order_place
from orders.tasks import order_refund_email_task
from payments.errors import RefundOutcomeUnknown, RefundRefused
from payments.models import PaymentAttempt, Refund
from payments.refunds import order_refundable_amount, refund_create, refund_destinations, refund_submit
from payments.tests.test_stripe import SECRET_KEY, _configure, _event, _send, _start
from payments.tests.test_stripe import api as api  # noqa: F401  (the fake Stripe API fixture)
from payments.wallet import wallet_balance, wallet_pay
from tests.commerce import pay, place, product_with_codes

S = Order.Status
D = Refund.Destination
PASSWORD = "Customer-Pass-1"


def _customer():
    name = f"c-{uuid.uuid4().hex[:10]}"
    return get_user_model().objects.create_user(username=name, email=f"{name}@example.test", password=PASSWORD)


def _staff():
    return get_user_model().objects.get(email=DEMO["alpha"][1])


def _paid(*, customer=None, quantity: int = 1, price: str = "15.00") -> Order:
    """A storefront order paid through the sandbox and delivered from the vault."""
    order = place(product_with_codes(codes=quantity + 2, price=price), quantity, customer=customer)
    assert pay(order) == (True, "ok")
    order.refresh_from_db()
    assert order.status == S.DELIVERED
    return order


def _balance(code: str) -> Decimal:
    account = Account.objects.filter(code=code).first()
    return account.balance if account else Decimal("0.00")


def _refund_requests(api) -> list[dict]:
    return [r for r in api.requests if r["path"] == "/v1/refunds"]


def _stripe_paid(api, django_capture_on_commit_callbacks) -> tuple[Order, PaymentAttempt]:
    _configure(api.url)
    order, attempt, _url = _start()
    with schema_context("alpha"):
        attempt.refresh_from_db()  # external_id = the checkout session id
    with django_capture_on_commit_callbacks(execute=False):
        assert _send(_event(attempt)).status_code == 200
    with schema_context("alpha"):
        order.refresh_from_db()
        attempt.refresh_from_db()
    assert order.status == S.DELIVERED
    return order, attempt


# --- Stripe -----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_full_stripe_refund_is_made_through_the_api_with_the_shops_key(api, django_capture_on_commit_callbacks):
    order, attempt = _stripe_paid(api, django_capture_on_commit_callbacks)
    with schema_context("alpha"):
        staff = _staff()
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            refund = refund_create(order_id=order.pk, amount="15.00", destination=D.CHANNEL, staff=staff, reason="dup")

        [request] = _refund_requests(api)
        assert request["headers"]["Authorization"] == f"Bearer {SECRET_KEY}"
        assert request["headers"]["Idempotency-Key"] == f"refund-{refund.token}"
        assert request["form"]["amount"] == "1500"
        assert request["form"]["payment_intent"] == f"pi_{attempt.external_id}"  # read from the session
        assert any(r["path"] == f"/v1/checkout/sessions/{attempt.external_id}" for r in api.requests)

        refund.refresh_from_db()
        assert (refund.status, refund.gateway_refund_id, refund.gateway_status) == (
            "succeeded",
            "re_test_1",
            "succeeded",
        )
        assert (refund.amount, refund.provider, refund.staff) == (Decimal("15.00"), "stripe", staff)
        order.refresh_from_db()
        assert order.status == S.REFUNDED
        event = order.events.get(to_status=S.REFUNDED)
        assert (event.from_status, event.actor) == (S.DELIVERED, staff)
        # The code stays with the customer: flagged, not back in stock.
        [assignment] = CardAssignment.objects.filter(order_line__order=order)
        assert assignment.refunded_at is not None
        assert Card.objects.get(pk=assignment.card_id).status == Card.Status.SOLD
        # Revenue reversed into refunds, the money out of payment clearing: one balanced transaction.
        assert Transaction.objects.get(idempotency_key=f"refund:{refund.token}").kind == "refund"
        assert (_balance("refunds"), _balance("payment_clearing")) == (Decimal("15.00"), Decimal("0.00"))
        assert ledger_check() == []
        assert len(callbacks) == 1  # the customer's e-mail, after commit


@pytest.mark.django_db
def test_partial_stripe_refunds_add_up_to_the_paid_amount_and_no_more(api, django_capture_on_commit_callbacks):
    order, _attempt = _stripe_paid(api, django_capture_on_commit_callbacks)
    with schema_context("alpha"), django_capture_on_commit_callbacks(execute=False):
        first = refund_create(order_id=order.pk, amount="5.00", destination=D.CHANNEL, staff=_staff(), reason="late")
        order.refresh_from_db()
        assert order.status == S.PARTIALLY_REFUNDED and order_refundable_amount(order) == Decimal("10.00")

        with pytest.raises(RefundRefused) as too_much:
            refund_create(order_id=order.pk, amount="10.01", destination=D.CHANNEL, staff=_staff(), reason="more")
        assert too_much.value.code == "amount_exceeds_refundable"
        assert len(_refund_requests(api)) == 1  # refused before the gateway was asked

        second = refund_create(order_id=order.pk, amount="10.00", destination=D.CHANNEL, staff=_staff(), reason="rest")
        order.refresh_from_db()
        assert order.status == S.REFUNDED
        assert [r["form"]["amount"] for r in _refund_requests(api)] == ["500", "1000"]
        keys = [r["headers"]["Idempotency-Key"] for r in _refund_requests(api)]
        assert keys == [f"refund-{first.token}", f"refund-{second.token}"]
        assert list(
            order.events.filter(to_status__in=[S.PARTIALLY_REFUNDED, S.REFUNDED]).values_list(
                "from_status", "to_status"
            )
        ) == [(S.DELIVERED, S.PARTIALLY_REFUNDED), (S.PARTIALLY_REFUNDED, S.REFUNDED)]

        assert refund_submit(refund_id=second.pk).status == "succeeded"  # settled: the gateway is not asked again
        assert len(_refund_requests(api)) == 2
        assert _balance("refunds") == Decimal("15.00") and ledger_check() == []
        with pytest.raises(RefundRefused) as after:
            refund_create(order_id=order.pk, amount="0.01", destination=D.CHANNEL, staff=_staff(), reason="again")
        assert after.value.code == "order_not_refundable"


@pytest.mark.django_db
def test_a_refund_stripe_refuses_books_nothing_and_frees_the_amount(api, django_capture_on_commit_callbacks):
    order, _attempt = _stripe_paid(api, django_capture_on_commit_callbacks)
    api.refund_error = (400, {"error": {"type": "invalid_request_error", "message": "Charge has been disputed."}})
    with schema_context("alpha"), django_capture_on_commit_callbacks(execute=False):
        with pytest.raises(RefundRefused) as refused:
            refund_create(order_id=order.pk, amount="15.00", destination=D.CHANNEL, staff=_staff(), reason="dup")
        assert refused.value.code == "gateway_refused"
        failed = Refund.objects.get()
        assert failed.status == "failed" and failed.error
        order.refresh_from_db()
        assert order.status == S.DELIVERED and order_refundable_amount(order) == Decimal("15.00")
        assert not Transaction.objects.filter(kind="refund").exists()

        api.refund_error = None
        refund_create(order_id=order.pk, amount="15.00", destination=D.CHANNEL, staff=_staff(), reason="dup")
        order.refresh_from_db()
        assert order.status == S.REFUNDED and ledger_check() == []


@pytest.mark.django_db
def test_a_refund_stripe_does_not_answer_stays_pending_and_is_resubmitted_with_the_same_key(
    api, django_capture_on_commit_callbacks
):
    order, _attempt = _stripe_paid(api, django_capture_on_commit_callbacks)
    api.refund_error = (500, {"error": {"type": "api_error", "message": "Something went wrong."}})
    with schema_context("alpha"), django_capture_on_commit_callbacks(execute=False):
        with pytest.raises(RefundOutcomeUnknown):
            refund_create(order_id=order.pk, amount="15.00", destination=D.CHANNEL, staff=_staff(), reason="dup")
        pending = Refund.objects.get()
        assert pending.status == "pending"
        order.refresh_from_db()
        assert order.status == S.DELIVERED
        assert order_refundable_amount(order) == Decimal("0.00")  # reserved by the pending refund
        with pytest.raises(RefundRefused):
            refund_create(order_id=order.pk, amount="1.00", destination=D.OUTSIDE, staff=_staff(), reason="x2")

        api.refund_error = None
        assert refund_submit(refund_id=pending.pk).status == "succeeded"
        assert refund_submit(refund_id=pending.pk).status == "succeeded"
        keys = {r["headers"]["Idempotency-Key"] for r in _refund_requests(api)}
        assert keys == {f"refund-{pending.token}"} and len(api.refunds) == 1
        order.refresh_from_db()
        assert order.status == S.REFUNDED
        assert Transaction.objects.filter(kind="refund").count() == 1 and ledger_check() == []


# --- sandbox, wallet, outside ----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_sandbox_refund_is_instant_and_reduces_payment_clearing(django_capture_on_commit_callbacks):
    with schema_context("alpha"), django_capture_on_commit_callbacks(execute=False):
        order = _paid()
        assert refund_destinations(order) == [D.CHANNEL, D.OUTSIDE]  # a guest: no wallet
        refund = refund_create(order_id=order.pk, amount="4.50", destination=D.CHANNEL, staff=_staff(), reason="late")
        assert refund.status == "succeeded" and refund.gateway_refund_id.startswith("SBXR")
        order.refresh_from_db()
        assert order.status == S.PARTIALLY_REFUNDED
        assert _balance("payment_clearing") == Decimal("10.50")
        assert ledger_check() == []


@pytest.mark.django_db
def test_a_wallet_refund_credits_the_customer_and_emails_once(django_capture_on_commit_callbacks):
    with schema_context("alpha"):
        customer = _customer()
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            order = _paid(customer=customer)
            refund = refund_create(
                order_id=order.pk, amount="15.00", destination=D.WALLET, staff=_staff(), reason="customer asked"
            )
        assert wallet_balance(customer) == Decimal("15.00")
        assert _balance("payment_clearing") == Decimal("15.00")  # the gateway keeps the money; the shop owes it
        entries = Transaction.objects.get(kind="refund").entries.values_list("account__code", "amount")
        assert sorted(entries) == sorted([("refunds", Decimal("15.00")), (f"wallet:{customer.pk}", Decimal("-15.00"))])
        assert ledger_check() == []
        order.refresh_from_db()
        assert order.status == S.REFUNDED
        assert len(callbacks) >= 1
        mail.outbox.clear()
        order_refund_email_task.apply([refund.pk])
        order_refund_email_task.apply([refund.pk])  # a duplicate run sends nothing
    [message] = mail.outbox
    assert message.to == [order.email] and order.number in message.subject
    assert "15.00" in message.body and "wallet" in message.body


@pytest.mark.django_db
def test_an_order_paid_from_the_wallet_is_refunded_to_the_wallet(django_capture_on_commit_callbacks):
    from payments.tests.test_wallet import _top_up

    with schema_context("alpha"), django_capture_on_commit_callbacks(execute=False):
        customer = _customer()
        _top_up(customer, "20.00")
        order = wallet_pay(order=place(product_with_codes(codes=2, price="15.00"), customer=customer), user=customer)
        assert wallet_balance(customer) == Decimal("5.00")
        assert refund_destinations(order) == [D.CHANNEL]
        refund = refund_create(order_id=order.pk, amount="15.00", destination=D.WALLET, staff=_staff(), reason="dup")
        assert refund.destination == D.CHANNEL and refund.provider == "balance"
        assert wallet_balance(customer) == Decimal("20.00")
        assert ledger_check() == []


@pytest.mark.django_db
def test_a_guest_cannot_be_refunded_to_a_wallet():
    with schema_context("alpha"):
        order = _paid()
        with pytest.raises(RefundRefused) as refused:
            refund_create(order_id=order.pk, amount="15.00", destination=D.WALLET, staff=_staff(), reason="asked")
        assert refused.value.code == "guest_has_no_wallet" and refused.value.field == "destination"
        assert "guest" in refused.value.message
        assert not Refund.objects.exists()
        order.refresh_from_db()
        assert order.status == S.DELIVERED


@pytest.mark.django_db
def test_bad_amounts_reasons_and_unpaid_orders_are_refused():
    with schema_context("alpha"):
        order = _paid()
        for amount, code in (("0", "invalid_amount"), ("-1", "invalid_amount"), ("abc", "invalid_amount")):
            with pytest.raises(RefundRefused) as refused:
                refund_create(order_id=order.pk, amount=amount, destination=D.CHANNEL, staff=_staff(), reason="ok!")
            assert refused.value.code == code
        with pytest.raises(RefundRefused) as over:
            refund_create(order_id=order.pk, amount="15.01", destination=D.CHANNEL, staff=_staff(), reason="ok!")
        assert over.value.code == "amount_exceeds_refundable"
        with pytest.raises(RefundRefused) as no_reason:
            refund_create(order_id=order.pk, amount="1", destination=D.CHANNEL, staff=_staff(), reason="  ")
        assert no_reason.value.code == "reason_missing"
        unpaid = place(product_with_codes(codes=1))
        with pytest.raises(RefundRefused) as not_paid:
            refund_create(order_id=unpaid.pk, amount="1", destination=D.OUTSIDE, staff=_staff(), reason="ok!")
        assert not_paid.value.code == "order_not_refundable"
        assert not Refund.objects.exists() and not Transaction.objects.filter(kind="refund").exists()


@pytest.mark.django_db
def test_an_epay_order_is_refunded_outside_or_to_the_wallet_never_to_the_channel(django_capture_on_commit_callbacks):
    with schema_context("alpha"), django_capture_on_commit_callbacks(execute=False):
        customer = _customer()
        order = place(product_with_codes(codes=2, price="15.00"), customer=customer)
        order = order_mark_paid(
            order_id=order.pk, amount=order.total, currency=order.currency, provider="epay", payment_reference="T1"
        )
        assert refund_destinations(order) == [D.WALLET, D.OUTSIDE]
        with pytest.raises(RefundRefused) as refused:
            refund_create(order_id=order.pk, amount="15.00", destination=D.CHANNEL, staff=_staff(), reason="asked")
        assert refused.value.code == "destination_unavailable"
        refund = refund_create(
            order_id=order.pk, amount="15.00", destination=D.OUTSIDE, staff=_staff(), reason="refunded in dashboard"
        )
        assert refund.status == "succeeded" and refund.gateway_refund_id == ""
        assert _balance("payment_clearing") == Decimal("0.00") and wallet_balance(customer) == Decimal("0.00")
        assert ledger_check() == []


@pytest.mark.django_db
def test_refunding_an_order_awaiting_stock_closes_it_and_releases_its_reservations(
    django_capture_on_commit_callbacks,
):
    with schema_context("alpha"), django_capture_on_commit_callbacks(execute=False):
        customer = _customer()
        variant = product_with_codes(codes=3, price="10.00")
        order = order_place(
            items=[CartItem(variant_id=variant.pk, quantity=3)], email="c@example.test", customer=customer
        )
        # Two of the three reserved codes were voided meanwhile: one is delivered, two are missing.
        voided = list(Card.objects.filter(variant=variant).order_by("pk").values_list("pk", flat=True))[:2]
        Card.objects.filter(pk__in=voided).update(status=Card.Status.VOID, reserved_for=None, reserved_until=None)
        order = order_mark_paid(
            order_id=order.pk, amount=order.total, currency=order.currency, provider="test", payment_reference="r"
        )
        assert order.status == S.AWAITING_STOCK
        Card.objects.filter(pk=voided[0]).update(status=Card.Status.AVAILABLE)  # a code came back meanwhile
        refund_create(order_id=order.pk, amount="30.00", destination=D.WALLET, staff=_staff(), reason="no stock")
        order.refresh_from_db()
        assert order.status == S.REFUNDED
        assert wallet_balance(customer) == Decimal("30.00")
        assert not Card.objects.filter(variant=Variant.objects.get(pk=variant.pk), status=Card.Status.RESERVED).exists()
        assert CardAssignment.objects.filter(order_line__order=order, refunded_at__isnull=False).count() == 1
        assert ledger_check() == []


@pytest.mark.django_db
def test_a_partial_refund_of_a_manual_order_closes_it_and_gives_the_manual_stock_back(
    django_capture_on_commit_callbacks,
):
    with schema_context("alpha"), django_capture_on_commit_callbacks(execute=False):
        variant = product_with_codes(codes=0, price="5.00", delivery_mode="manual")
        Variant.objects.filter(pk=variant.pk).update(manual_stock=3)
        order = place(variant, 2)
        assert pay(order) == (True, "ok")
        order.refresh_from_db()
        assert order.status == S.MANUAL_FULFILMENT
        assert Variant.objects.get(pk=variant.pk).manual_stock == 1

        refund_create(order_id=order.pk, amount="4.00", destination=D.CHANNEL, staff=_staff(), reason="goodwill")

        order.refresh_from_db()
        assert order.status == S.PARTIALLY_REFUNDED  # closed: no longer in the fulfilment queue
        assert Variant.objects.get(pk=variant.pk).manual_stock == 3
        assert order_refundable_amount(order) == order.total - Decimal("4.00")
        assert ledger_check() == []


# --- concurrency -----------------------------------------------------------------------------------


def _in_thread(schema: str, fn, *args):
    try:
        with schema_context(schema):
            return fn(*args)
    finally:
        connection.close()


def test_concurrent_refunds_never_exceed_what_was_paid(live_db):
    with schema_context("beta"):
        customer = _customer()
        order = place(product_with_codes(codes=3, price="20.00"), customer=customer)
        assert pay(order) == (True, "ok")
        staff = get_user_model().objects.get(email=DEMO["beta"][1])

    def attempt(amount: str):
        try:
            return refund_create(
                order_id=order.pk, amount=amount, destination=D.WALLET, staff=staff, reason="race"
            ).amount
        except RefundRefused as exc:
            return exc.code

    amounts = ["3.00"] * 10 + ["20.00"] * 2
    with ThreadPoolExecutor(max_workers=12) as pool:
        outcomes = list(pool.map(lambda a: _in_thread("beta", attempt, a), amounts))
    refunded = sum((o for o in outcomes if isinstance(o, Decimal)), Decimal("0"))
    made = sorted(o for o in outcomes if isinstance(o, Decimal))
    refused = [o for o in outcomes if not isinstance(o, Decimal)]
    # Settled one at a time under the order's lock: either a 20.00 came first (and nothing else fits)
    # or 3.00 refunds came first, six of them fit, and the 2.00 left takes nothing more.
    assert made in ([Decimal("20.00")], [Decimal("3.00")] * 6), outcomes
    assert set(refused) == {"amount_exceeds_refundable"} or set(refused) <= {
        "amount_exceeds_refundable",
        "order_not_refundable",
    }, outcomes
    with schema_context("beta"):
        stored = sum(Refund.objects.filter(order_id=order.pk, status="succeeded").values_list("amount", flat=True))
        assert stored == refunded
        assert wallet_balance(customer) == refunded
        assert _balance("refunds") == refunded
        assert ledger_check() == []
        final = Order.objects.get(pk=order.pk)
        assert final.status == (S.REFUNDED if refunded == Decimal("20.00") else S.PARTIALLY_REFUNDED)


# --- admin and the customer's page -----------------------------------------------------------------


def _refund_url(order: Order) -> str:
    return f"/admin/orders/order/{order.pk}/refund/"


@pytest.mark.django_db
def test_the_admin_refund_page_refunds_with_a_confirmation_and_shows_errors_as_messages(
    staff_client, django_capture_on_commit_callbacks
):
    with schema_context("alpha"):
        customer = _customer()
        order = _paid(customer=customer)
        card_id = CardAssignment.objects.get(order_line__order=order).card_id
    change = staff_client.get(f"/admin/orders/order/{order.pk}/change/").content.decode()
    assert _refund_url(order) in change

    page = staff_client.get(_refund_url(order))
    assert page.status_code == 200
    body = page.content.decode()
    assert 'data-testid="refundable">15.00' in body and 'value="wallet"' in body and 'value="outside"' in body

    form = {"amount": "5.00", "destination": "wallet", "reason": "arrived late"}
    unconfirmed = staff_client.post(_refund_url(order), form)
    assert unconfirmed.status_code == 200
    too_much = staff_client.post(_refund_url(order), {**form, "amount": "15.01", "confirm": "on"})
    assert too_much.status_code == 200 and "At most 15.00" in too_much.content.decode()
    with schema_context("alpha"):
        assert not Refund.objects.exists()

    with django_capture_on_commit_callbacks(execute=False):
        done = staff_client.post(_refund_url(order), {**form, "confirm": "on"})
    assert done.status_code == 302 and done["Location"] == f"/admin/orders/order/{order.pk}/change/"
    with schema_context("alpha"):
        refund = Refund.objects.get()
        assert (refund.amount, refund.destination, refund.staff.email) == (Decimal("5.00"), "wallet", DEMO["alpha"][1])
        assert wallet_balance(customer) == Decimal("5.00")
    change = staff_client.get(f"/admin/orders/order/{order.pk}/change/").content.decode()
    assert "arrived late" in change and "refunded after delivery" in change
    card = staff_client.get(f"/admin/cardvault/card/{card_id}/change/").content.decode()
    assert order.number in card and "refunded after delivery" in card
    refunded_codes = staff_client.get("/admin/cardvault/card/?refunded=yes").content.decode()
    assert f"/admin/cardvault/card/{card_id}/change/" in refunded_codes
    assert staff_client.get("/admin/payments/refund/").status_code == 200

    # The customer's order page shows the refund, and the codes they keep.
    client = host_client("alpha.localhost")
    client.post("/accounts/login/", {"login": customer.email, "password": PASSWORD})
    mine = client.get(f"/orders/{order.number}/").content.decode()
    assert 'data-testid="refund"' in mine and "5.00" in mine and 'data-testid="code"' in mine

    # Refunded in full: the page says so and no longer shows the codes.
    with django_capture_on_commit_callbacks(execute=False):
        rest = staff_client.post(_refund_url(order), {**form, "amount": "10.00", "confirm": "on"})
    assert rest.status_code == 302
    mine = client.get(f"/orders/{order.number}/").content.decode()
    assert "This order was refunded." in mine and mine.count('data-testid="refund"') == 2
    assert 'data-testid="code"' not in mine
    assert client.get(f"/orders/{order.number}/codes.txt").status_code == 404


@pytest.mark.django_db
def test_an_order_awaiting_stock_is_refunded_to_the_wallet_in_one_click(
    staff_client, django_capture_on_commit_callbacks
):
    with schema_context("alpha"):
        customer = _customer()
        variant = product_with_codes(codes=1, price="12.00")
        order = place(variant, customer=customer)
        Card.objects.filter(variant=variant).update(status=Card.Status.VOID, reserved_for=None, reserved_until=None)
        order = order_mark_paid(
            order_id=order.pk, amount=order.total, currency=order.currency, provider="test", payment_reference="r"
        )
        assert order.status == S.AWAITING_STOCK
    page = staff_client.get(_refund_url(order)).content.decode()
    assert f"/admin/orders/order/{order.pk}/refund-to-wallet/" in page
    with django_capture_on_commit_callbacks(execute=False):
        response = staff_client.post(f"/admin/orders/order/{order.pk}/refund-to-wallet/")
    assert response.status_code == 302
    with schema_context("alpha"):
        assert wallet_balance(customer) == Decimal("12.00")
        assert Order.objects.get(pk=order.pk).status == S.REFUNDED
        assert ledger_check() == []
    again = staff_client.post(f"/admin/orders/order/{order.pk}/refund-to-wallet/", follow=True)
    assert "not awaiting stock" in again.content.decode()
    with schema_context("alpha"):
        assert Refund.objects.count() == 1


@pytest.mark.django_db
def test_the_refund_button_is_offered_only_for_paid_orders(staff_client):
    with schema_context("alpha"):
        unpaid = place(product_with_codes(codes=1))
    assert _refund_url(unpaid) not in staff_client.get(f"/admin/orders/order/{unpaid.pk}/change/").content.decode()
    page = staff_client.get(_refund_url(unpaid)).content.decode()
    assert 'data-testid="nothing-to-refund"' in page


@pytest.mark.django_db
def test_site_as_own_admin_refunds_its_own_orders(public_client, django_capture_on_commit_callbacks):
    with schema_context("public"):
        admin_user = get_user_model().objects.create_superuser("site-a-root", "root@site-a.test", "root-pass-12345")
        order = _paid()
    public_client.force_login(admin_user)
    form = {"amount": "15.00", "destination": "outside", "reason": "refunded in the dashboard", "confirm": "on"}
    with django_capture_on_commit_callbacks(execute=False):
        response = public_client.post(_refund_url(order), form)
    assert response.status_code == 302
    with schema_context("public"):
        assert Order.objects.get(pk=order.pk).status == S.REFUNDED
        assert Refund.objects.get().staff == admin_user
        assert ledger_check() == []
    with schema_context("alpha"):
        assert not Refund.objects.exists()  # nothing leaks into a branch


@pytest.mark.django_db
def test_staff_without_the_order_permission_cannot_refund(alpha_client):
    with schema_context("alpha"):
        order = _paid(customer=_customer())
        clerk = get_user_model().objects.create_user(
            username="clerk", email="clerk@alpha.test", password="clerk-pass-123", is_staff=True
        )
        alpha_client.force_login(clerk)
    form = {"amount": "15.00", "destination": "wallet", "reason": "not allowed", "confirm": "on"}
    assert alpha_client.post(_refund_url(order), form).status_code == 403
    assert alpha_client.post(f"/admin/orders/order/{order.pk}/refund-to-wallet/").status_code == 403
    with schema_context("alpha"):
        assert not Refund.objects.exists()
