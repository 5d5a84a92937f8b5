"""The orders admin on a branch: the fulfilment queue, manual fulfilment, retrying delivery."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core import mail
from django_tenants.utils import schema_context

from cardvault.models import Card, CardAssignment
from cardvault.services import codes_parse_text, import_commit
from catalog.models import Category, Product, Variant
from conftest import DEMO
from orders.models import Order
from orders.services import CartItem, order_mark_paid, order_place
from orders.tasks import order_delivery_email_task

pytestmark = pytest.mark.django_db

ORDERS_URL = "/admin/orders/order/"
QUEUE_URL = ORDERS_URL + "queue/"


def _variant(name: str, *, manual: bool = False, codes: str = "") -> Variant:
    category, _ = Category.objects.get_or_create(slug="games", defaults={"name": "Games"})
    product = Product.objects.create(
        category=category,
        name=name,
        slug=name.lower().replace(" ", "-"),
        delivery_mode=Product.DeliveryMode.MANUAL if manual else Product.DeliveryMode.AUTOMATIC,
        checkout_fields=[{"name": "account", "label": "Account to top up", "required": True}] if manual else [],
    )
    variant = Variant.objects.create(product=product, sku=name.upper()[:10], name="100", price=Decimal("9.00"))
    if codes:
        import_commit(variant=variant, parsed=codes_parse_text(codes), unit_cost=Decimal("6.00"), source="paste")
    return variant


def _paid_order(variant: Variant, quantity: int = 1, checkout_input: dict | None = None) -> Order:
    order = order_place(
        items=[CartItem(variant_id=variant.pk, quantity=quantity, checkout_input=checkout_input or {})],
        email="buyer@example.test",
    )
    return order_mark_paid(
        order_id=order.pk, amount=order.total, currency=order.currency, provider="test", payment_reference="ref"
    )


@pytest.fixture
def manual_order() -> Order:
    with schema_context("alpha"):
        order = _paid_order(_variant("Game top up", manual=True), checkout_input={"account": "PLAYER-4242"})
    assert order.status == Order.Status.MANUAL_FULFILMENT
    return order


@pytest.fixture
def out_of_stock_order() -> Order:
    """Paid, but its reserved codes vanished (voided by staff meanwhile): it waits for stock."""
    with schema_context("alpha"):
        variant = _variant("Steam card", codes="OOS-1\nOOS-2")
        order = order_place(items=[CartItem(variant_id=variant.pk, quantity=2)], email="buyer@example.test")
        Card.objects.filter(variant=variant).update(status=Card.Status.VOID, reserved_for=None, reserved_until=None)
        order = order_mark_paid(
            order_id=order.pk, amount=order.total, currency=order.currency, provider="test", payment_reference="r"
        )
    assert order.status == Order.Status.AWAITING_STOCK
    return order


def test_queue_lists_orders_waiting_for_staff_with_the_customers_input(staff_client, manual_order, out_of_stock_order):
    with schema_context("alpha"):
        delivered = _paid_order(_variant("Instant card", codes="INSTANT-1"))
    assert delivered.status == Order.Status.DELIVERED

    assert QUEUE_URL in staff_client.get(ORDERS_URL).content.decode()
    body = staff_client.get(QUEUE_URL).content.decode()

    assert manual_order.number in body and out_of_stock_order.number in body
    assert delivered.number not in body
    assert "Account to top up" in body and "PLAYER-4242" in body
    assert f"{ORDERS_URL}{manual_order.pk}/fulfil/" in body


def test_manual_fulfilment_from_the_admin_delivers_the_order_and_emails_the_codes(
    staff_client, manual_order, monkeypatch, django_capture_on_commit_callbacks
):
    # No Celery worker in this test: run the queued e-mail task in-process, as the worker would.
    monkeypatch.setattr(
        order_delivery_email_task, "delay", lambda order_id: order_delivery_email_task.apply([order_id])
    )
    fulfil_url = f"{ORDERS_URL}{manual_order.pk}/fulfil/"
    assert fulfil_url in staff_client.get(f"{ORDERS_URL}{manual_order.pk}/change/").content.decode()
    page = staff_client.get(fulfil_url).content.decode()
    assert "Account to top up" in page and "PLAYER-4242" in page

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = staff_client.post(fulfil_url, {"codes": "TOPUP-VOUCHER-77\n", "note": "Topped up PLAYER-4242"})

    assert response.status_code == 302 and response["Location"] == QUEUE_URL
    assert len(callbacks) == 1
    with schema_context("alpha"):
        order = Order.objects.get(pk=manual_order.pk)
        event = order.events.latest("pk")
    assert order.status == Order.Status.DELIVERED and order.delivery_email_sent_at is not None
    assert (event.to_status, event.actor.email) == (Order.Status.DELIVERED, DEMO["alpha"][1])
    [message] = mail.outbox
    assert message.to == ["buyer@example.test"]
    assert "TOPUP-VOUCHER-77" in message.body and "Topped up PLAYER-4242" in message.body


def test_fulfilling_with_nothing_entered_is_a_message_not_an_error(staff_client, manual_order):
    response = staff_client.post(f"{ORDERS_URL}{manual_order.pk}/fulfil/", {"codes": "", "note": ""})

    assert response.status_code == 200
    assert "Paste the codes or write what was done." in response.content.decode()
    with schema_context("alpha"):
        assert Order.objects.get(pk=manual_order.pk).status == Order.Status.MANUAL_FULFILMENT


def test_fulfilling_an_order_that_is_not_waiting_is_a_message_not_an_error(staff_client):
    with schema_context("alpha"):
        delivered = _paid_order(_variant("Instant card", codes="INSTANT-1"))

    response = staff_client.post(f"{ORDERS_URL}{delivered.pk}/fulfil/", {"codes": "X", "note": ""})

    assert response.status_code == 200
    assert "Only paid orders waiting for fulfilment can be fulfilled." in response.content.decode()
    assert (
        f"{ORDERS_URL}{delivered.pk}/fulfil/"
        not in staff_client.get(f"{ORDERS_URL}{delivered.pk}/change/").content.decode()
    )


def test_retry_delivery_action_delivers_orders_once_stock_arrived(staff_client, out_of_stock_order, manual_order):
    with schema_context("alpha"):
        line = out_of_stock_order.lines.get()
        import_commit(
            variant=line.variant, parsed=codes_parse_text("NEW-1\nNEW-2"), unit_cost=Decimal("6.00"), source="paste"
        )

    response = staff_client.post(
        ORDERS_URL,
        {"action": "retry_delivery", "_selected_action": [out_of_stock_order.pk, manual_order.pk], "index": 0},
        follow=True,
    )

    with schema_context("alpha"):
        assert Order.objects.get(pk=out_of_stock_order.pk).status == Order.Status.DELIVERED
        assert CardAssignment.objects.filter(order_line=line).count() == 2
        assert Order.objects.get(pk=manual_order.pk).status == Order.Status.MANUAL_FULFILMENT
    body = response.content.decode()
    assert "1 order(s) delivered." in body and "1 selected order(s) were not awaiting stock." in body


def test_retry_delivery_without_stock_says_so(staff_client, out_of_stock_order):
    response = staff_client.post(
        ORDERS_URL, {"action": "retry_delivery", "_selected_action": [out_of_stock_order.pk], "index": 0}, follow=True
    )

    assert "still not enough codes in stock" in response.content.decode()
    with schema_context("alpha"):
        assert Order.objects.get(pk=out_of_stock_order.pk).status == Order.Status.AWAITING_STOCK


def test_orders_cannot_be_added_edited_or_deleted_in_the_admin(staff_client, manual_order):
    change_url = f"{ORDERS_URL}{manual_order.pk}/change/"

    assert staff_client.get(change_url).status_code == 200
    assert staff_client.get(ORDERS_URL + "add/").status_code == 403
    assert staff_client.post(change_url, {"email": "thief@example.test", "status": "delivered"}).status_code == 403
    assert staff_client.post(f"{ORDERS_URL}{manual_order.pk}/delete/", {"post": "yes"}).status_code == 403
    with schema_context("alpha"):
        order = Order.objects.get(pk=manual_order.pk)
    assert (order.email, order.status) == ("buyer@example.test", Order.Status.MANUAL_FULFILMENT)


def test_order_list_filters_the_staff_queue(staff_client, manual_order):
    with schema_context("alpha"):
        delivered = _paid_order(_variant("Instant card", codes="INSTANT-1"))

    response = staff_client.get(ORDERS_URL, {"queue": "staff"})

    assert [o.pk for o in response.context["cl"].result_list] == [manual_order.pk]
    assert delivered.pk != manual_order.pk
