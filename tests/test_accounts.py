"""Accounts on every domain: customer sign-up, e-mail verification, password reset, staff MFA, limits."""

import re

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret, hotp_value, yield_hotp_counters_from_time
from django.contrib.auth import get_user_model
from django.core import mail
from django_tenants.utils import schema_context

from conftest import host_client

pytestmark = pytest.mark.django_db
User = get_user_model()


def _current_code(secret: str) -> str:
    counter = next(yield_hotp_counters_from_time())
    return f"{hotp_value(secret, counter):06d}"


def _staff(schema: str, email: str, password: str = "Staff-Pass-9876") -> User:
    with schema_context(schema):
        return User.objects.create_user(username=email, email=email, password=password, is_staff=True)


def test_customer_signs_up_on_a_branch_and_gets_a_verification_mail_from_that_domain():
    client = host_client("beta.localhost")
    response = client.post(
        "/accounts/signup/",
        {"email": "buyer@beta-customer.test", "password1": "Buyer-Pass-2468", "password2": "Buyer-Pass-2468"},
    )
    assert response.status_code == 302
    with schema_context("beta"):
        assert User.objects.filter(email="buyer@beta-customer.test").exists()
    with schema_context("alpha"):
        assert not User.objects.filter(email="buyer@beta-customer.test").exists()
    assert len(mail.outbox) == 1
    assert "http://beta.localhost/accounts/confirm-email/" in mail.outbox[0].body


def test_password_reset_link_points_at_the_branch_domain():
    with schema_context("alpha"):
        User.objects.create_user(username="forgetful", email="forgetful@alpha-customer.test", password="Old-Pass-13579")
    response = host_client("alpha.localhost").post(
        "/accounts/password/reset/", {"email": "forgetful@alpha-customer.test"}
    )
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    link = re.search(r"http://[^\s]+/accounts/password/reset/key/[^\s]+", mail.outbox[0].body).group(0)
    assert link.startswith("http://alpha.localhost/")


def test_staff_with_totp_must_enter_a_code_before_the_admin():
    user = _staff("alpha", "mfa-staff@alpha.test")
    secret = generate_totp_secret()
    with schema_context("alpha"):
        TOTP.activate(user, secret)
    client = host_client("alpha.localhost")

    response = client.post(
        "/accounts/login/?next=/admin/", {"login": "mfa-staff@alpha.test", "password": "Staff-Pass-9876"}
    )
    assert response.status_code == 302 and response["Location"].startswith("/accounts/2fa/authenticate/")
    assert client.get("/admin/").status_code == 302  # not logged in yet

    assert client.post("/accounts/2fa/authenticate/", {"code": "000000"}).status_code == 200
    assert client.get("/admin/").status_code == 302

    response = client.post("/accounts/2fa/authenticate/", {"code": _current_code(secret)})
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200


def test_staff_can_open_the_totp_setup_page():
    _staff("beta", "setup@beta.test")
    client = host_client("beta.localhost")
    client.post("/accounts/login/", {"login": "setup@beta.test", "password": "Staff-Pass-9876"})
    # Turning MFA on asks for the password again first.
    assert client.get("/accounts/2fa/totp/activate/")["Location"].startswith("/accounts/reauthenticate/")
    client.post("/accounts/reauthenticate/", {"password": "Staff-Pass-9876"})
    response = client.get("/accounts/2fa/totp/activate/")
    assert response.status_code == 200
    assert b"Authenticator secret" in response.content
    assert b"data:image/svg+xml" in response.content  # the QR code to scan


def test_repeated_failed_logins_are_rate_limited():
    _staff("alpha", "target@alpha.test")
    client = host_client("alpha.localhost")
    for _ in range(5):
        client.post("/accounts/login/", {"login": "target@alpha.test", "password": "wrong-guess"})
    response = client.post("/accounts/login/", {"login": "target@alpha.test", "password": "Staff-Pass-9876"})
    assert response.status_code in (200, 429)
    assert b"Too many failed login attempts" in response.content
    assert "_auth_user_id" not in client.session
