"""Who sees codes: the buying browser, the owning account, or a guest who passes the lookup — never a bare link."""

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings
from django_tenants.utils import schema_context

from cardvault.models import CardReveal
from conftest import host_client
from orders.models import Order
from tests.commerce import product_with_codes

pytestmark = pytest.mark.django_db


@pytest.fixture
def variant():
    with schema_context("alpha"):
        return product_with_codes(codes=5, name="Steam Wallet")


def _buy(client, variant, **extra):
    data = {
        "variant": variant.pk,
        "quantity": 1,
        "expected_price": "15.00",
        "email": "guest@example.test",
        "lookup_password": "lookup-123",
        "payment": "sandbox",
        **extra,
    }
    response = client.post(f"/p/{variant.product.slug}/buy/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    gateway = response["Location"]
    done = client.post(gateway, {"action": "pay"})
    number = done["Location"].split("/")[2]
    return number


def _codes_of(number):
    with schema_context("alpha"):
        from cardvault.models import Card
        from cardvault.services import cards_reveal

        cards = list(Card.objects.filter(assignments__order_line__order__number=number))
        return [c.code for c in cards_reveal(cards=cards, channel="admin")]


def test_the_buying_browser_sees_its_codes_and_can_download_them(variant, django_capture_on_commit_callbacks):
    buyer = host_client("alpha.localhost")
    with django_capture_on_commit_callbacks(execute=False):
        number = _buy(buyer, variant)
    page = buyer.get(f"/orders/{number}/")
    code = _codes_of(number)[0]
    assert page.status_code == 200 and code in page.content.decode()
    txt = buyer.get(f"/orders/{number}/codes.txt")
    assert txt.status_code == 200 and txt.content.decode().strip() == code
    assert txt["Content-Disposition"].startswith("attachment")
    with schema_context("alpha"):
        channels = set(CardReveal.objects.filter(order_number=number).values_list("channel", flat=True))
    assert {"order_page", "txt"} <= channels


def test_a_bare_order_link_shows_status_but_never_codes(variant, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        number = _buy(host_client("alpha.localhost"), variant)
    stranger = host_client("alpha.localhost")
    page = stranger.get(f"/orders/{number}/")
    assert page.status_code == 200 and b"Delivered" in page.content
    assert _codes_of(number)[0] not in page.content.decode()
    assert stranger.get(f"/orders/{number}/codes.txt").status_code == 404
    assert stranger.get(f"/orders/{number}/status").json()["status"] == "delivered"


def test_guest_lookup_unlocks_the_codes_only_with_the_right_details(variant, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        number = _buy(host_client("alpha.localhost"), variant)
    guest = host_client("alpha.localhost")
    wrong = guest.post("/orders/lookup/", {"number": number, "email": "guest@example.test", "password": "nope"})
    assert wrong.status_code == 400 and b"No order matches" in wrong.content
    right = guest.post(
        "/orders/lookup/", {"number": number.lower(), "email": "GUEST@example.test", "password": "lookup-123"}
    )
    assert right.status_code == 302
    assert _codes_of(number)[0] in guest.get(right["Location"]).content.decode()


def test_the_same_order_number_is_unknown_on_another_shop(variant, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        number = _buy(host_client("alpha.localhost"), variant)
    beta = host_client("beta.localhost")
    assert beta.get(f"/orders/{number}/").status_code == 404
    response = beta.post("/orders/lookup/", {"number": number, "email": "guest@example.test", "password": "lookup-123"})
    assert response.status_code == 400


@override_settings(ORDER_LOOKUP_RATE="3/m")
def test_guest_lookup_is_rate_limited(variant):
    client = host_client("alpha.localhost")
    for _ in range(3):
        client.post("/orders/lookup/", {"number": "AAAA", "email": "a@b.test", "password": "x"})
    response = client.post("/orders/lookup/", {"number": "AAAA", "email": "a@b.test", "password": "x"})
    assert response.status_code == 429 and b"Too many attempts" in response.content


def test_a_logged_in_customer_sees_own_orders_and_codes(variant, django_capture_on_commit_callbacks):
    with schema_context("alpha"):
        get_user_model().objects.create_user(username="c1", email="c1@example.test", password="Customer-Pass-1")
    customer = host_client("alpha.localhost")
    customer.post("/accounts/login/", {"login": "c1@example.test", "password": "Customer-Pass-1"})
    with django_capture_on_commit_callbacks(execute=False):
        number = _buy(customer, variant, email="c1@example.test", lookup_password="")
    with schema_context("alpha"):
        assert Order.objects.get(number=number).customer.email == "c1@example.test"
    assert number.encode() in customer.get("/orders/mine/").content
    customer.session.flush()  # a new session of the same account still sees the codes
    customer.post("/accounts/login/", {"login": "c1@example.test", "password": "Customer-Pass-1"})
    assert _codes_of(number)[0] in customer.get(f"/orders/{number}/").content.decode()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"expected_price": "0.01"}, b"price has changed"),
        ({"quantity": "0"}, b"Ensure this value is greater than or equal to 1"),
        ({"quantity": "999"}, b"between 1 and 20"),
        ({"variant": "999999"}, b"not available"),
        ({"email": "not-an-email"}, b"valid email"),
        ({"lookup_password": ""}, b"Choose a password"),
    ],
)
def test_tampered_or_bad_checkout_input_gets_a_clear_message(variant, change, message):
    client = host_client("alpha.localhost")
    data = {
        "variant": variant.pk,
        "quantity": 1,
        "expected_price": "15.00",
        "email": "guest@example.test",
        "lookup_password": "lookup-123",
        "payment": "sandbox",
        **change,
    }
    response = client.post(f"/p/{variant.product.slug}/buy/", data)
    assert response.status_code == 400
    assert message in response.content
    with schema_context("alpha"):
        assert not Order.objects.exists()


def test_a_variant_of_another_product_cannot_be_bought_through_this_page(variant):
    with schema_context("alpha"):
        other = product_with_codes(codes=5, price="1.00")
    client = host_client("alpha.localhost")
    data = {
        "variant": other.pk,
        "quantity": 1,
        "expected_price": "1.00",
        "email": "g@example.test",
        "lookup_password": "lookup-123",
        "payment": "sandbox",
    }
    response = client.post(f"/p/{variant.product.slug}/buy/", data)
    assert response.status_code == 400


def test_an_unpaid_order_can_go_back_to_payment_from_its_page_only_in_its_browser(variant):
    buyer = host_client("alpha.localhost")
    data = {
        "variant": variant.pk,
        "quantity": 1,
        "expected_price": "15.00",
        "email": "guest@example.test",
        "lookup_password": "lookup-123",
        "payment": "sandbox",
    }
    gateway = buyer.post(f"/p/{variant.product.slug}/buy/", data)["Location"]
    with schema_context("alpha"):
        number = Order.objects.get().number
    page = buyer.get(f"/orders/{number}/")
    assert b'data-testid="pay-again"' in page.content
    again = buyer.post(f"/orders/{number}/pay/")
    assert again.status_code == 302 and again["Location"].startswith("/pay/sandbox/") and again["Location"] != gateway
    stranger = host_client("alpha.localhost")
    assert b"pay-again" not in stranger.get(f"/orders/{number}/").content
    assert stranger.post(f"/orders/{number}/pay/").status_code == 404


def test_a_declined_payment_says_so_and_offers_to_pay_again(variant):
    buyer = host_client("alpha.localhost")
    response = buyer.post(
        f"/p/{variant.product.slug}/buy/",
        {
            "variant": variant.pk,
            "quantity": 1,
            "expected_price": "15.00",
            "email": "guest@example.test",
            "lookup_password": "lookup-123",
            "payment": "sandbox",
        },
    )
    declined = buyer.post(response["Location"], {"action": "decline"})
    number = declined["Location"].split("/")[2]
    assert declined["Location"] == f"/orders/{number}/?payment=declined"

    page = buyer.get(declined["Location"]).content.decode()
    assert 'data-testid="payment-declined"' in page and "nothing was charged" in page
    assert 'data-testid="pay-again"' in page
    with schema_context("alpha"):
        assert Order.objects.get(number=number).status == Order.Status.PENDING_PAYMENT
    # Only right after the gateway: the order's own address says nothing about a decline.
    assert 'data-testid="payment-declined"' not in buyer.get(f"/orders/{number}/").content.decode()
