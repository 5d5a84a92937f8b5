"""Branch-owner sign-up on the public domain: validation, rate limit, and the whole journey."""

import re
import time

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings
from django_tenants.utils import schema_context

from conftest import host_client
from tenants.models import Branch

User = get_user_model()
GOOD = {"name": "Gamma Gifts", "slug": "gamma", "email": "owner@gamma.test", "password": "Sturdy-Passphrase-42"}


def _post(client, **changes):
    return client.post("/signup/", {**GOOD, **changes})


def _field_error(response, field: str) -> str:
    match = re.search(rf'data-error-for="{field}">([^<]+)<', response.content.decode())
    return match.group(1) if match else ""


@pytest.mark.django_db
def test_signup_page_renders_on_public_domain(public_client):
    response = public_client.get("/signup/")
    assert response.status_code == 200
    assert b'name="slug"' in response.content and b".localhost" in response.content


@pytest.mark.django_db
def test_signup_is_not_offered_on_branch_domains(alpha_client):
    assert alpha_client.get("/signup/").status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("slug", "ab", "3–30 lowercase letters"),
        ("slug", "a" * 31, "30 characters"),
        ("slug", "-gamma", "3–30 lowercase letters"),
        ("slug", "gamma-", "3–30 lowercase letters"),
        ("slug", "gam--ma", "3–30 lowercase letters"),
        ("slug", "gam_ma", "3–30 lowercase letters"),
        ("slug", "gam.ma", "3–30 lowercase letters"),
        ("slug", "9lives", "starting with a letter"),
        ("slug", "shöp", "3–30 lowercase letters"),
        ("slug", "www", "reserved"),
        ("slug", "admin", "reserved"),
        ("slug", "api", "reserved"),
        ("slug", "static", "reserved"),
        ("slug", "media", "reserved"),
        ("slug", "mail", "reserved"),
        ("slug", "alpha", "already taken"),
        ("slug", "ALPHA", "already taken"),
        ("slug", "", "required"),
        ("email", "not-an-email", "valid email"),
        ("email", "", "required"),
        ("name", "", "required"),
        ("name", " ", "required"),
        ("password", "short1", "too short"),
        ("password", "password123", "too common"),
        ("password", "83920571938475", "entirely numeric"),
        ("password", "owner@gamma.test1", "too similar"),
        ("password", "", "required"),
    ],
)
def test_each_bad_input_gets_a_clear_message_and_creates_nothing(public_client, field, value, message):
    response = _post(public_client, **{field: value})
    assert response.status_code == 400
    assert message in _field_error(response, field), response.content.decode()[:3000]
    assert not Branch.objects.filter(slug="gamma").exists()


@pytest.mark.django_db
def test_signup_form_keeps_input_but_never_echoes_the_password(public_client):
    response = _post(public_client, slug="www")
    body = response.content.decode()
    assert 'value="Gamma Gifts"' in body and 'value="owner@gamma.test"' in body
    assert GOOD["password"] not in body


@pytest.mark.django_db
@override_settings(SIGNUP_ATTEMPT_RATE="3/h")
def test_signup_attempts_are_rate_limited_per_ip(public_client):
    for _ in range(3):
        assert _post(public_client, slug="www").status_code == 400
    response = _post(public_client, slug="www")
    assert response.status_code == 429
    assert b"Too many sign-ups" in response.content
    other_ip = host_client("localhost")
    assert other_ip.post("/signup/", {**GOOD, "slug": "www"}, REMOTE_ADDR="10.9.8.7").status_code == 400


@pytest.mark.django_db
@override_settings(SIGNUP_RATE="1/h")
def test_successful_signups_are_rate_limited_per_ip(public_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        assert _post(public_client).status_code == 302
        response = _post(public_client, slug="gamma-two")
    assert response.status_code == 429
    assert not Branch.objects.filter(slug="gamma-two").exists()


@pytest.mark.django_db
def test_signup_stores_only_a_password_hash(public_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        _post(public_client)
    branch = Branch.objects.get(slug="gamma")
    assert branch.status == Branch.Status.PROVISIONING
    assert GOOD["password"] not in branch.pending_owner_password
    assert branch.pending_owner_password.startswith(("md5$", "pbkdf2", "argon2"))
    assert len(callbacks) == 1  # the provisioning task is queued only after commit


@pytest.mark.django_db
def test_progress_page_rejects_forged_tokens(public_client):
    assert public_client.get("/signup/not-a-token/").status_code == 404
    assert public_client.get("/signup/not-a-token/status").status_code == 404


def test_signup_journey_provisions_in_the_worker_and_owner_logs_into_admin(live_db, celery_worker_thread):
    client = host_client("localhost")
    response = _post(client, slug="journey", email="owner@journey.test")
    assert response.status_code == 302
    progress_url = response["Location"]
    assert client.get(progress_url).status_code == 200

    status = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = client.get(progress_url + "status").json()
        if status["ready"] or status["failed"]:
            break
        time.sleep(0.1)
    assert status["ready"], status
    assert status["admin_url"] == "http://journey.localhost/admin/"
    assert status["seconds"] < 5

    branch = Branch.objects.get(slug="journey")
    assert branch.pending_owner_password == ""  # the hash is gone once the owner exists
    with schema_context("journey"):
        assert User.objects.get(email="owner@journey.test").is_superuser

    shop = host_client("journey.localhost")
    assert shop.get("/").status_code == 200
    login = shop.post("/accounts/login/?next=/admin/", {"login": "owner@journey.test", "password": GOOD["password"]})
    assert login.status_code == 302 and login["Location"] == "/admin/"
    admin = shop.get("/admin/")
    assert admin.status_code == 200
    assert b"Gamma Gifts" in admin.content
