"""The branch's receiver for Site A's webhooks: verify with standardwebhooks, then pull.

Events only say what changed; the receiver queues the matching pull (incremental sync, balance,
waiting orders) and answers at once, so Site A never waits on the branch's work.
"""

from __future__ import annotations

import json
import logging

from django.db import connection as db_connection
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from standardwebhooks import Webhook, WebhookVerificationError

from branch_api.upstream.models import UpstreamConnection
from core.crypto import decrypt, encrypt

logger = logging.getLogger(__name__)
SYNC_EVENTS = {"product.updated", "stock.changed", "price.changed"}
WEBHOOK_PATH = "/api/upstream/webhook"


def webhook_secret_aad() -> str:
    return f"upstream|webhook|{db_connection.schema_name}"


def connection_set_webhook_secret(connection: UpstreamConnection, secret: str) -> None:
    connection.webhook_secret_encrypted = encrypt(secret, aad=webhook_secret_aad())


@csrf_exempt
@require_POST
def receive(request):
    connection = UpstreamConnection.objects.filter(is_enabled=True).first()
    if connection is None or not connection.webhook_secret_encrypted:
        return JsonResponse({"code": "not_configured"}, status=404)
    secret = decrypt(connection.webhook_secret_encrypted, aad=webhook_secret_aad())
    try:
        event = Webhook(secret).verify(request.body, dict(request.headers))
    except WebhookVerificationError:
        return JsonResponse({"code": "bad_signature"}, status=401)
    except (ValueError, json.JSONDecodeError):
        return JsonResponse({"code": "invalid"}, status=400)
    kind = event.get("type", "") if isinstance(event, dict) else ""
    from branch_api.upstream import tasks

    if kind in SYNC_EVENTS:
        full = kind == "price.changed" and bool((event.get("data") or {}).get("full"))
        tasks.upstream_sync_task.delay(full=full)
    elif kind == "balance.low":
        tasks.upstream_balance_task.delay()
    elif kind == "order.status_changed":
        tasks.upstream_retry_waiting_task.delay()
    return HttpResponse(status=204)
