"""The offline sandbox gateway: a hosted pay page on our own domain that sends a signed callback.

It behaves like a real gateway (merchant id, trade number, HMAC-signed notification that may arrive
more than once), so the whole purchase journey works without network access.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.db import connection
from django.http import HttpResponse
from django.urls import reverse

from payments.errors import CallbackRejected
from payments.providers import CallbackData

FIELDS = ("token", "trade_no", "amount", "currency", "merchant", "status")


def _key() -> bytes:
    # Per-shop secret derived from the deployment secret: one shop's callbacks don't verify on another.
    return hmac.new(
        settings.SECRET_KEY.encode(), f"sandbox-gateway:{connection.schema_name}".encode(), hashlib.sha256
    ).digest()


def sandbox_sign(data: dict) -> str:
    message = "\n".join(f"{name}={data.get(name, '')}" for name in FIELDS)
    return hmac.new(_key(), message.encode(), hashlib.sha256).hexdigest()


class SandboxProvider:
    code = "sandbox"
    label = "Sandbox (test payments)"

    def expected_merchant(self) -> str:
        return f"sandbox-{connection.schema_name}"

    def start_url(self, *, attempt, request) -> str:
        return reverse("sandbox-gateway", kwargs={"token": attempt.token})

    def refund(self, *, attempt, amount: Decimal, idempotency_key: str, refund_token: str = "") -> tuple[str, str]:
        """A simulated instant refund: the sandbox holds no money, so it always succeeds."""
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:16].upper()
        return f"SBXR{digest}", "succeeded"

    def notification(self, *, attempt, succeeded: bool = True) -> dict:
        """The signed notification the gateway sends when the customer pays (or fails) on its page."""
        data = {
            "token": attempt.token,
            "trade_no": attempt.external_id or f"SBX{secrets.token_hex(8).upper()}",
            "amount": f"{attempt.amount:.2f}",
            "currency": attempt.currency,
            "merchant": self.expected_merchant(),
            "status": "paid" if succeeded else "failed",
        }
        data["signature"] = sandbox_sign(data)
        return data

    def parse_callback(self, data: dict) -> CallbackData:
        if not settings.PAYMENTS_SANDBOX_ENABLED:
            raise CallbackRejected("the sandbox is disabled", code="provider_unavailable")
        signature = str(data.get("signature", ""))
        if not signature or not hmac.compare_digest(signature, sandbox_sign(data)):
            raise CallbackRejected("bad signature", code="bad_signature")
        try:
            amount = Decimal(str(data["amount"]))
        except (KeyError, InvalidOperation):
            raise CallbackRejected("bad amount", code="bad_amount") from None
        if data.get("status") not in {"paid", "failed"}:
            raise CallbackRejected("unknown status", code="bad_status")
        return CallbackData(
            token=str(data.get("token", "")),
            external_id=str(data.get("trade_no", "")),
            amount=amount,
            currency=str(data.get("currency", "")),
            merchant=str(data.get("merchant", "")),
            succeeded=data["status"] == "paid",
        )

    def callback_response(self, *, accepted: bool) -> HttpResponse:
        return HttpResponse(
            "success" if accepted else "fail", content_type="text/plain", status=200 if accepted else 400
        )
