"""The branch's receiver accepts only Site A's webhooks signed with its endpoint secret."""

import json
from datetime import UTC, datetime

import pytest
from django_tenants.utils import schema_context
from standardwebhooks import Webhook

from branch_api.upstream.models import UpstreamConnection
from branch_api.upstream.webhook import WEBHOOK_PATH, connection_set_webhook_secret
from conftest import host_client

pytestmark = pytest.mark.django_db
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def configured():
    with schema_context("alpha"):
        connection = UpstreamConnection.objects.get()
        connection_set_webhook_secret(connection, SECRET)
        connection.save()


def _signed(event: dict, secret: str = SECRET) -> tuple[bytes, dict]:
    body = json.dumps(event).encode()
    stamp = datetime.now(tz=UTC)
    signature = Webhook(secret).sign("msg_test123", stamp, body.decode())
    headers = {
        "HTTP_WEBHOOK_ID": "msg_test123",
        "HTTP_WEBHOOK_TIMESTAMP": str(int(stamp.timestamp())),
        "HTTP_WEBHOOK_SIGNATURE": signature,
    }
    return body, headers


def test_a_signed_event_is_accepted(configured, django_capture_on_commit_callbacks):
    body, headers = _signed({"type": "ping", "timestamp": "now", "data": {"endpoint_id": 1}})
    response = host_client("alpha.localhost").post(WEBHOOK_PATH, body, content_type="application/json", **headers)
    assert response.status_code == 204


def test_a_tampered_or_foreign_event_is_refused(configured):
    body, headers = _signed({"type": "stock.changed", "data": {"variant_ids": [1]}})
    client = host_client("alpha.localhost")
    tampered = body.replace(b"[1]", b"[2]")
    assert client.post(WEBHOOK_PATH, tampered, content_type="application/json", **headers).status_code == 401
    body, headers = _signed({"type": "stock.changed", "data": {}}, secret="whsec_" + "A" * 32)
    assert client.post(WEBHOOK_PATH, body, content_type="application/json", **headers).status_code == 401
    assert client.post(WEBHOOK_PATH, body, content_type="application/json").status_code == 401


def test_without_a_secret_the_receiver_is_not_there():
    with schema_context("beta"):
        UpstreamConnection.objects.update(webhook_secret_encrypted="")
    body, headers = _signed({"type": "ping", "data": {}})
    response = host_client("beta.localhost").post(WEBHOOK_PATH, body, content_type="application/json", **headers)
    assert response.status_code == 404
