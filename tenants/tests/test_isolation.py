"""What one branch creates is invisible to another: users, sessions, cache keys, files, admin data."""

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django_tenants.utils import schema_context

from conftest import DEMO

pytestmark = pytest.mark.django_db
User = get_user_model()


def test_user_created_on_alpha_does_not_exist_on_beta():
    with schema_context("alpha"):
        User.objects.create_user(username="only-alpha", email="only@alpha.test", password="pw-123456789")
    with schema_context("beta"):
        assert not User.objects.filter(username="only-alpha").exists()
    with schema_context("public"):
        assert not User.objects.filter(username="only-alpha").exists()


def test_alpha_owner_cannot_log_in_on_beta(alpha_client, beta_client):
    email, password = DEMO["alpha"][1], DEMO["alpha"][2]
    assert alpha_client.post("/accounts/login/", {"login": email, "password": password}).status_code == 302
    response = beta_client.post("/accounts/login/", {"login": email, "password": password})
    assert response.status_code == 200  # the form again, with an error
    assert "_auth_user_id" not in beta_client.session


def test_session_from_alpha_is_anonymous_on_beta(alpha_client, beta_client):
    email, password = DEMO["alpha"][1], DEMO["alpha"][2]
    alpha_client.post("/accounts/login/", {"login": email, "password": password})
    assert alpha_client.get("/admin/").status_code == 200
    session_cookie = alpha_client.cookies[settings.SESSION_COOKIE_NAME].value

    beta_client.cookies[settings.SESSION_COOKIE_NAME] = session_cookie
    response = beta_client.get("/admin/")
    assert response.status_code == 302
    assert "login" in response["Location"]
    assert "_auth_user_id" not in beta_client.session


def test_cache_key_set_on_alpha_is_invisible_on_beta():
    with schema_context("alpha"):
        cache.set("greeting", "hello from alpha")
    with schema_context("beta"):
        assert cache.get("greeting") is None
        cache.set("greeting", "hello from beta")
    with schema_context("alpha"):
        assert cache.get("greeting") == "hello from alpha"


def test_uploaded_file_on_alpha_is_invisible_on_beta():
    with schema_context("alpha"):
        name = default_storage.save("logos/shop.txt", ContentFile(b"alpha logo"))
        alpha_path = default_storage.path(name)
        assert default_storage.exists(name)
        assert default_storage.url(name).startswith("/media/alpha/")
    try:
        with schema_context("beta"):
            assert not default_storage.exists(name)
            assert default_storage.path(name) != alpha_path
    finally:
        with schema_context("alpha"):
            default_storage.delete(name)


def test_branch_admin_cannot_see_platform_only_models(alpha_client):
    email, password = DEMO["alpha"][1], DEMO["alpha"][2]
    alpha_client.post("/accounts/login/", {"login": email, "password": password})
    index = alpha_client.get("/admin/")
    assert index.status_code == 200
    assert b"/admin/tenants/branch/" not in index.content
    assert alpha_client.get("/admin/tenants/branch/").status_code == 403
    assert alpha_client.get("/admin/django_celery_beat/periodictask/").status_code == 403


def test_public_admin_lists_branches_with_domains_and_status(public_client):
    from core.management.commands.seed_demo import demo_admin_ensure

    demo_admin_ensure("root@site-a.test", "root-pass-12345")
    public_client.post("/accounts/login/", {"login": "root@site-a.test", "password": "root-pass-12345"})
    response = public_client.get("/admin/tenants/branch/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "alpha.localhost" in body and "beta.localhost" in body
    assert "Alpha Cards" in body and "active" in body
