"""Placing, paying, expiring and fulfilling orders."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone
from django_tenants.utils import schema_context

from cardvault.errors import OutOfStock
from cardvault.models import Card, CardAssignment, CardReveal
from catalog.models import Product
from ledger.models import Transaction
from ledger.services import ledger_check
from orders.errors import CheckoutInputMissing, OrderStateError, PriceChanged, QuantityOutOfRange, VariantUnavailable
from orders.models import Order
from orders.services import (
    CartItem,
    order_cancel,
    order_check_lookup,
    order_expire,
    order_fulfil_manually,
    order_place,
    order_retry_delivery,
    orders_expire_due,
)
from orders.tasks import order_delivery_email_task
from tests.commerce import pay, place, product_with_codes

pytestmark = pytest.mark.django_db
D = Decimal
S = Order.Status


def _stock(variant) -> int:
    return Card.objects.filter(variant=variant, status=Card.Status.AVAILABLE).count()


def test_placing_an_order_reserves_codes_until_payment_is_due():
    with schema_context("alpha"):
        variant = product_with_codes(codes=5)
        order = place(variant, 2)
        assert order.status == S.PENDING_PAYMENT and order.total == D("30.00")
        assert len(order.number) == 16 and order.number.isalnum()
        reserved = Card.objects.filter(reserved_for__order=order)
        assert reserved.count() == 2 and all(c.reserved_until == order.expires_at for c in reserved)
        assert _stock(variant) == 3
        assert order.events.get().to_status == S.PENDING_PAYMENT


def test_order_numbers_are_unguessable_and_unique():
    with schema_context("alpha"):
        variant = product_with_codes(codes=30)
        numbers = {place(variant, 1).number for _ in range(30)}
        assert len(numbers) == 30


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"quantity": 0}, QuantityOutOfRange),
        ({"quantity": 21}, QuantityOutOfRange),
        ({"expected_unit_price": D("1.00")}, PriceChanged),
        ({"variant_id": 999999}, VariantUnavailable),
        ({"quantity": 6}, OutOfStock),
    ],
)
def test_bad_checkout_input_is_refused_and_changes_nothing(change, error):
    with schema_context("alpha"):
        variant = product_with_codes(codes=5)
        item = {"variant_id": variant.pk, "quantity": 1, "expected_unit_price": D("15.00"), **change}
        orders_before = Order.objects.count()
        with pytest.raises(error) as excinfo:
            order_place(items=[CartItem(**item)], email="x@example.test", lookup_password="pw")
        assert excinfo.value.message
        assert Order.objects.count() == orders_before
        assert _stock(variant) == 5


def test_inactive_product_or_variant_cannot_be_bought():
    with schema_context("alpha"):
        variant = product_with_codes(codes=5)
        Product.objects.filter(pk=variant.product_id).update(is_active=False)
        with pytest.raises(VariantUnavailable):
            place(variant, 1)
        Product.objects.filter(pk=variant.product_id).update(is_active=True)
        variant.is_active = False
        variant.save()
        with pytest.raises(VariantUnavailable):
            place(variant, 1)


def test_manual_goods_require_their_checkout_input():
    with schema_context("alpha"):
        variant = product_with_codes(
            codes=0, delivery_mode="manual", checkout_fields=[{"name": "account", "label": "Account", "required": True}]
        )
        with pytest.raises(CheckoutInputMissing, match="Account"):
            place(variant, 1)
        order = place(variant, 1, checkout_input={"account": " player-42 ", "extra": "ignored"})
        assert order.lines.get().checkout_input == {"account": "player-42"}


def test_payment_delivers_codes_books_ledger_and_emails_them(django_capture_on_commit_callbacks):
    with schema_context("alpha"):
        variant = product_with_codes(codes=5)
        order = place(variant, 2)
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            assert pay(order) == (True, "ok")
        order.refresh_from_db()
        assert order.status == S.DELIVERED and order.paid_at and order.delivered_at
        assignments = CardAssignment.objects.filter(order_line__order=order)
        assert assignments.count() == 2
        assert Card.objects.filter(pk__in=assignments.values("card"), status=Card.Status.SOLD).count() == 2
        assert Transaction.objects.filter(reference=order.number).count() == 2  # payment + cost
        assert ledger_check() == []
        assert len(callbacks) == 1  # the delivery e-mail, queued after commit

        order_delivery_email_task(order.pk)
        order_delivery_email_task(order.pk)  # a duplicate run sends nothing more
        assert len(mail.outbox) == 1
        codes = [c.code for c in _revealed(order)]
        assert all(code in mail.outbox[0].body for code in codes)
        assert CardReveal.objects.filter(channel="email", order_number=order.number).count() == 2


def _revealed(order):
    from cardvault.services import cards_reveal

    cards = list(Card.objects.filter(assignments__order_line__order=order))
    return cards_reveal(cards=cards, channel="admin")


def test_expiry_releases_reserved_codes_and_is_idempotent():
    with schema_context("alpha"):
        variant = product_with_codes(codes=3)
        order = place(variant, 2)
        assert not order_expire(order_id=order.pk)  # not due yet
        Order.objects.filter(pk=order.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
        assert orders_expire_due() == 1
        assert orders_expire_due() == 0
        order.refresh_from_db()
        assert order.status == S.EXPIRED
        assert _stock(variant) == 3


def test_late_payment_after_expiry_re_reserves_and_delivers(django_capture_on_commit_callbacks):
    with schema_context("alpha"):
        variant = product_with_codes(codes=3)
        order = place(variant, 2)
        notification = _notification(order)
        Order.objects.filter(pk=order.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
        orders_expire_due()
        with django_capture_on_commit_callbacks(execute=False):
            assert _callback(notification) == (True, "ok")
        order.refresh_from_db()
        assert order.status == S.DELIVERED
        assert order.events.filter(message__contains="after expiry").exists()
        assert _stock(variant) == 1


def test_late_payment_when_stock_is_gone_lands_in_review_and_alerts_staff(django_capture_on_commit_callbacks):
    with schema_context("alpha"):
        variant = product_with_codes(codes=2)
        order = place(variant, 2)
        notification = _notification(order)
        Order.objects.filter(pk=order.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
        orders_expire_due()
        place(variant, 2)  # someone else buys the released codes
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            assert _callback(notification) == (True, "ok")
        order.refresh_from_db()
        assert order.status == S.AWAITING_STOCK and order.paid_at is not None
        assert len(callbacks) == 1  # staff alert queued, never "paid, no code, nobody told"

        product_codes = "\n".join(f"LATE-{i}" for i in range(2))
        from cardvault.services import codes_parse_text, import_commit

        import_commit(variant=variant, parsed=codes_parse_text(product_codes), unit_cost=D("10"), source="paste")
        with django_capture_on_commit_callbacks(execute=False):
            order_retry_delivery(order_id=order.pk)
        order.refresh_from_db()
        assert order.status == S.DELIVERED


def test_manual_order_waits_for_staff_then_is_delivered_with_their_codes(django_capture_on_commit_callbacks):
    with schema_context("alpha"):
        variant = product_with_codes(codes=0, delivery_mode="manual", cost="4.00")
        order = place(variant, 1)
        with django_capture_on_commit_callbacks(execute=False):
            pay(order)
        order.refresh_from_db()
        assert order.status == S.MANUAL_FULFILMENT
        with pytest.raises(CheckoutInputMissing):
            order_fulfil_manually(order_id=order.pk, actor=None, codes=" ", note="")
        with django_capture_on_commit_callbacks(execute=False):
            order_fulfil_manually(order_id=order.pk, actor=None, codes="TOPUP-REF-1", note="Topped up")
        order.refresh_from_db()
        assert order.status == S.DELIVERED
        order_delivery_email_task(order.pk)
        assert "TOPUP-REF-1" in mail.outbox[0].body and "Topped up" in mail.outbox[0].body
        assert ledger_check() == []


def test_wrong_amount_is_refused_even_with_a_valid_signature():
    with schema_context("alpha"):
        variant = product_with_codes(codes=1)
        order = place(variant, 1)
        from orders.services import order_mark_paid

        with pytest.raises(OrderStateError):
            order_mark_paid(
                order_id=order.pk, amount=D("0.01"), currency=order.currency, provider="sandbox", payment_reference="x"
            )
        order.refresh_from_db()
        assert order.status == S.PENDING_PAYMENT


def test_cancel_releases_codes_and_only_works_while_unpaid():
    with schema_context("alpha"):
        variant = product_with_codes(codes=2)
        order = place(variant, 2)
        order_cancel(order_id=order.pk)
        assert _stock(variant) == 2
        with pytest.raises(OrderStateError):
            order_cancel(order_id=order.pk)


def test_guest_lookup_needs_the_email_and_the_password():
    with schema_context("alpha"):
        variant = product_with_codes(codes=1)
        order = place(variant, 1, email="Guest@Example.test", lookup_password="s3cret-pw")
        assert "s3cret-pw" not in order.lookup_password
        assert order_check_lookup(order, email="guest@example.test ", password="s3cret-pw")
        assert not order_check_lookup(order, email="guest@example.test", password="wrong")
        assert not order_check_lookup(order, email="other@example.test", password="s3cret-pw")


def _notification(order):
    from tests.commerce import sandbox_notification

    return sandbox_notification(order)


def _callback(notification):
    from payments.services import payment_callback_handle

    return payment_callback_handle(provider_code="sandbox", data=notification)


def test_a_late_payment_after_the_manual_stock_was_sold_still_settles(django_capture_on_commit_callbacks):
    from tests.commerce import sandbox_notification

    with schema_context("alpha"):
        variant = product_with_codes(codes=0, delivery_mode="manual")
        variant.manual_stock = 1
        variant.save()
        late = place(variant, 1)
        notification = sandbox_notification(late)
        Order.objects.filter(pk=late.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
        orders_expire_due()
        with django_capture_on_commit_callbacks(execute=False):
            pay(place(variant, 1))  # someone else buys the unit the expiry gave back
            assert _callback(notification) == (True, "ok")
        late.refresh_from_db()
        variant.refresh_from_db()
        assert late.status == S.MANUAL_FULFILMENT and variant.manual_stock == 0
        assert late.events.filter(message__contains="ran out meanwhile").exists()


def test_cancelling_gives_manual_stock_back():
    with schema_context("alpha"):
        variant = product_with_codes(codes=0, delivery_mode="manual")
        variant.manual_stock = 2
        variant.save()
        order = place(variant, 2)
        variant.refresh_from_db()
        assert variant.manual_stock == 0
        order_cancel(order_id=order.pk)
        variant.refresh_from_db()
        assert variant.manual_stock == 2
