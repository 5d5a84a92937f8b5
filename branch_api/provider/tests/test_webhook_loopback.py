"""Webhooks to the branches of a local deployment (``*.localhost``): allowed by
``WEBHOOK_ALLOW_LOOPBACK`` (local settings), refused in production settings, and never a way to
reach private or link-local addresses."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django_tenants.utils import schema_context

from branch_api.provider import webhooks
from branch_api.provider.errors import ApiError as DomainError
from branch_api.provider.models import WebhookDelivery, WebhookEndpoint
from branch_api.provider.tests.test_webhooks import Receiver
from branch_api.upstream.models import UpstreamConnection
from branch_api.upstream.webhook import WEBHOOK_PATH
from tenants.services import branch_provision

ROOT = Path(django_settings.BASE_DIR)


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def loopback(settings):
    settings.DEBUG = False
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    settings.WEBHOOK_ALLOW_LOOPBACK = True
    settings.WEBHOOK_TIMEOUT_SECONDS = 3
    return settings


@pytest.fixture
def production_like(settings):
    settings.DEBUG = False
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    settings.WEBHOOK_ALLOW_LOOPBACK = False
    return settings


@pytest.mark.django_db
def test_a_localhost_branch_receives_a_signed_webhook_when_loopback_is_allowed(alpha, loopback, receiver):
    port = receiver.server.server_address[1]
    url = f"http://alpha.localhost:{port}{WEBHOOK_PATH}"
    endpoint, receiver.secret = webhooks.webhook_endpoint_create(branch=alpha, url=url)

    delivery = webhooks.webhook_emit(branch=alpha, event_type=webhooks.BALANCE_LOW, data={"balance": "3.00"})[0]
    webhooks.webhook_deliver(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.SUCCEEDED
    assert len(receiver.requests) == 1 and receiver.requests[0].verified
    # Sent to 127.0.0.1, addressed to the branch's own host (its tenant is chosen by Host).
    assert receiver.requests[0].headers["host"] == f"alpha.localhost:{port}"
    assert endpoint.url == url


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://0.0.0.0/hook",
    ],
)
def test_loopback_permission_does_not_open_private_or_link_local_addresses(alpha, loopback, url):
    with pytest.raises(DomainError):
        webhooks.webhook_url_check(url)
    assert not WebhookEndpoint.objects.filter(url=url).exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8000/hook", "http://[::1]/hook", "http://localhost:8000/hook", "http://beta.localhost/hook"],
)
def test_loopback_targets_pass_only_when_allowed(loopback, url):
    assert webhooks.webhook_url_check(url) == url
    loopback.WEBHOOK_ALLOW_LOOPBACK = False
    with pytest.raises(DomainError) as refused:
        webhooks.webhook_url_check(url)
    assert refused.value.code == "invalid" and "loopback" in refused.value.message


@pytest.mark.django_db
def test_a_delivery_to_a_localhost_branch_is_refused_once_loopback_is_off(alpha, loopback, receiver):
    port = receiver.server.server_address[1]
    _endpoint, receiver.secret = webhooks.webhook_endpoint_create(
        branch=alpha, url=f"http://alpha.localhost:{port}{WEBHOOK_PATH}"
    )
    delivery = webhooks.webhook_emit(branch=alpha, event_type=webhooks.BALANCE_LOW, data={"balance": "3.00"})[0]
    loopback.WEBHOOK_ALLOW_LOOPBACK = False  # e.g. these rows were copied to a production database

    webhooks.webhook_deliver(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.PENDING and "loopback" in delivery.last_error
    assert receiver.requests == []


@pytest.mark.django_db
def test_provisioning_again_registers_the_missing_webhook_of_a_local_branch(alpha, production_like):
    with schema_context("alpha"):
        UpstreamConnection.objects.update(webhook_secret_encrypted="")
    WebhookEndpoint.objects.filter(branch=alpha).delete()
    branch_provision(slug="alpha", name=alpha.name, owner_email=alpha.owner_email)
    assert not WebhookEndpoint.objects.filter(branch=alpha).exists()  # refused: relies on the pull

    production_like.WEBHOOK_ALLOW_LOOPBACK = True
    branch_provision(slug="alpha", name=alpha.name, owner_email=alpha.owner_email)

    endpoint = WebhookEndpoint.objects.get(branch=alpha)
    assert endpoint.url.startswith("http://alpha.localhost") and endpoint.url.endswith(WEBHOOK_PATH)
    with schema_context("alpha"):
        assert UpstreamConnection.objects.get().webhook_secret_encrypted


def _settings_value(module: str, **env: str) -> str:
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": module, **env}
    code = "from django.conf import settings; print(settings.WEBHOOK_ALLOW_LOOPBACK)"
    answer = subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )
    assert answer.returncode == 0, answer.stderr
    return answer.stdout.strip()


def test_local_settings_allow_loopback_and_production_settings_never_do():
    production_env = {
        "SECRET_KEY": secrets.token_urlsafe(64),
        "FIELD_ENCRYPTION_KEYS": "1:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "CODE_HMAC_PEPPER": secrets.token_urlsafe(40),
    }
    assert _settings_value("config.settings.local") == "True"
    assert _settings_value("config.settings.production", **production_env) == "False"
    assert _settings_value("config.settings.production", WEBHOOK_ALLOW_LOOPBACK="true", **production_env) == "False"
