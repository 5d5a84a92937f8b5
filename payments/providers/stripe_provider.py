"""Stripe Checkout: a hosted Checkout Session per payment attempt, a signed webhook to our callback URL.

Channel settings: ``{"api_base": optional override, "payment_method_types": ["card", ...] (optional)}``;
the secret is the JSON ``{"secret_key": "sk_...", "webhook_secret": "whsec_..."}``. Every API call uses
its own ``StripeClient`` (the shop's key and API base), never the library's global state.

A webhook is trusted only when its ``Stripe-Signature`` verifies with the shop's webhook secret and its
timestamp is within 300 s (past or future). ``checkout.session.completed`` /
``checkout.session.async_payment_succeeded`` with ``payment_status == "paid"`` is a success;
``charge.refunded`` and ``refund.created`` / ``refund.updated`` / ``refund.failed`` become refund notices
(``payments.refunds.refund_gateway_notice_apply``); every other event is acknowledged without changing
anything, and an event id already applied is skipped.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal

import stripe
from django.http import HttpResponse
from django.urls import reverse

from payments.channels import channel_secret_fields, payment_channel_get
from payments.errors import CallbackRejected, ProviderUnavailable, RefundOutcomeUnknown
from payments.providers import CallbackData, RefundNotice

CODE = "stripe"
TOLERANCE_SECONDS = 300
API_TIMEOUT_SECONDS = 10
MERCHANT = "stripe"  # the shop's own webhook secret is what binds a webhook to the shop
SUCCESS_EVENTS = {"checkout.session.completed", "checkout.session.async_payment_succeeded"}
REFUND_EVENTS = {"refund.created", "refund.updated", "refund.failed"}
CHARGE_REFUNDED = "charge.refunded"
# https://docs.stripe.com/currencies#zero-decimal and #three-decimal
ZERO_DECIMAL = {
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF",
}  # fmt: skip
THREE_DECIMAL = {"BHD", "JOD", "KWD", "OMR", "TND"}


def _exponent(currency: str) -> int:
    currency = currency.upper()
    return 0 if currency in ZERO_DECIMAL else 3 if currency in THREE_DECIMAL else 2


def to_minor_units(amount: Decimal, currency: str) -> int:
    """``amount`` in the currency's smallest unit (15.00 CNY → 1500); refuses fractions of it."""
    minor = amount.scaleb(_exponent(currency))
    if minor != minor.to_integral_value():
        raise ProviderUnavailable()
    return int(minor)


def from_minor_units(value, currency: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise CallbackRejected("bad amount", code="bad_amount")
    return Decimal(value).scaleb(-_exponent(currency))


def validate_channel(*, config: dict, secret: str) -> dict[str, str]:
    """Field errors of a Stripe channel's settings and (when given) its secret, before anything is saved."""
    errors: dict[str, str] = {}
    methods = config.get("payment_method_types")
    if methods is not None and not (
        isinstance(methods, list) and methods and all(isinstance(m, str) and m for m in methods)
    ):
        errors["config"] = 'payment_method_types must be a list of Stripe method names, e.g. ["card", "alipay"].'
    key_problem = ""
    if secret:
        try:
            fields = json.loads(secret)
        except ValueError:
            fields = None
        if not isinstance(fields, dict):
            key_problem = 'Paste the JSON {"secret_key": "sk_…", "webhook_secret": "whsec_…"}.'
        elif not str(fields.get("secret_key", "")).startswith(("sk_", "rk_")):
            key_problem = "secret_key must be a Stripe secret or restricted key (sk_… or rk_…)."
        elif not str(fields.get("webhook_secret", "")).startswith("whsec_"):
            key_problem = "webhook_secret must be the endpoint's signing secret (whsec_…)."
    if key_problem:
        errors["secret"] = key_problem
    return errors


class StripeProvider:
    code = CODE
    label = "Stripe"
    # The webhook is verified over the raw body and the Stripe-Signature header (see payments.views).
    callback_raw = True
    # Reasons answered 200 (Stripe must stop retrying) although nothing was applied.
    acknowledged_reasons = frozenset({"event_ignored", "event_already_applied", "not_paid"})
    validate_channel = staticmethod(validate_channel)

    def _settings(self, *, enabled_only: bool) -> tuple[dict, str, str]:
        """(channel settings, secret key, webhook secret) of the current shop's channel."""
        channel = payment_channel_get(CODE, enabled_only=enabled_only)
        if channel is None:
            raise ProviderUnavailable()
        try:
            secrets = channel_secret_fields(channel)
        except Exception:  # a secret that no longer decrypts (rotated away): treat as not configured
            raise ProviderUnavailable() from None
        secret_key, webhook_secret = secrets.get("secret_key", "").strip(), secrets.get("webhook_secret", "").strip()
        if not (secret_key and webhook_secret):
            raise ProviderUnavailable()
        return dict(channel.config or {}), secret_key, webhook_secret

    def _client(self, config: dict, secret_key: str) -> stripe.StripeClient:
        api_base = str(config.get("api_base") or "").strip().rstrip("/")
        return stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base} if api_base else None,
            http_client=stripe.new_default_http_client(timeout=API_TIMEOUT_SECONDS),
            max_network_retries=1,
        )

    def expected_merchant(self) -> str:
        try:
            self._settings(enabled_only=False)
        except ProviderUnavailable:
            return ""
        return MERCHANT

    def start_url(self, *, attempt, request) -> str:
        """Create a Checkout Session (network I/O, unlike the other providers) and return its URL."""
        from core.urls import shop_base_url

        config, secret_key, _webhook_secret = self._settings(enabled_only=True)
        base = shop_base_url()
        if attempt.order_id is not None:
            name = f"Order {attempt.order.number}"
            return_url = base + reverse("order-detail", kwargs={"number": attempt.order.number})
        else:
            name = f"Payment {attempt.pk}"
            return_url = base + "/"
        return_url = attempt.return_url or return_url
        params: dict = {
            "mode": "payment",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": attempt.currency.lower(),
                        "unit_amount": to_minor_units(attempt.amount, attempt.currency),
                        "product_data": {"name": name},
                    },
                }
            ],
            "client_reference_id": attempt.token,
            "metadata": {"token": attempt.token},
            "success_url": return_url,
            "cancel_url": return_url,
        }
        methods = config.get("payment_method_types")
        if isinstance(methods, list) and methods:
            params["payment_method_types"] = [str(method) for method in methods]
        try:
            session = self._client(config, secret_key).v1.checkout.sessions.create(
                params=params, options={"idempotency_key": f"checkout-{attempt.token}"}
            )
        except stripe.StripeError:
            raise ProviderUnavailable() from None  # payment_start is atomic: no attempt is left behind
        session_id, url = str(getattr(session, "id", "") or ""), str(getattr(session, "url", "") or "")
        if not (session_id and url):
            raise ProviderUnavailable()
        attempt.external_id = session_id[:128]
        attempt.save(update_fields=["external_id"])
        return url

    def refund(self, *, attempt, amount: Decimal, idempotency_key: str, refund_token: str = "") -> tuple[str, str]:
        """Refund ``amount`` of a paid attempt through Stripe; returns (refund id, Stripe's status).

        The payment intent is read from the attempt's Checkout Session (network I/O: call it outside
        any transaction). Raises ``ProviderUnavailable`` when Stripe refuses or cannot be reached; the
        idempotency key makes a retried call return the same refund instead of a second one.
        """
        config, secret_key, _webhook_secret = self._settings(enabled_only=False)
        client = self._client(config, secret_key)
        try:
            session = client.v1.checkout.sessions.retrieve(attempt.external_id)
            payment_intent = getattr(session, "payment_intent", None)
            payment_intent = str(getattr(payment_intent, "id", payment_intent) or "")
            if not payment_intent:
                raise ProviderUnavailable("Stripe has no payment for this checkout session.")
            refund = client.v1.refunds.create(
                params={
                    "payment_intent": payment_intent,
                    "amount": to_minor_units(amount, attempt.currency),
                    # The refund's own token lets its webhooks find it before we have stored its id.
                    "metadata": {"token": attempt.token, **({"refund": refund_token} if refund_token else {})},
                },
                options={"idempotency_key": idempotency_key},
            )
        except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
            raise RefundOutcomeUnknown() from exc
        except stripe.APIError as exc:  # Stripe's own failure (5xx): the refund may have been made
            raise RefundOutcomeUnknown() from exc
        except stripe.StripeError as exc:
            message = getattr(exc, "user_message", None) or "Stripe refused the refund."
            raise ProviderUnavailable(str(message)[:200]) from None
        return str(getattr(refund, "id", "") or "")[:128], str(getattr(refund, "status", "") or "")[:32]

    def raw_callback_data(self, *, body: bytes, headers) -> dict:
        """What the callback view hands to ``payment_callback_handle``: the raw body and the signature.

        ``event_id`` is read unverified here, only so that the log can be searched; ``parse_callback``
        trusts nothing until the signature verifies.
        """
        payload = body.decode("utf-8", errors="replace")
        try:
            event_id = str(json.loads(payload).get("id", ""))[:200]
        except (ValueError, AttributeError):
            event_id = ""
        return {"payload": payload, "signature": headers.get("Stripe-Signature", ""), "event_id": event_id}

    def parse_callback(self, data: dict) -> CallbackData:
        from payments.models import PaymentCallback

        try:
            _config, secret_key, webhook_secret = self._settings(enabled_only=False)
        except ProviderUnavailable:
            raise CallbackRejected("stripe is not configured", code="channel_unavailable") from None
        payload, header = str(data.get("payload", "")), str(data.get("signature", ""))
        try:
            stripe.Webhook.construct_event(payload, header, webhook_secret, tolerance=TOLERANCE_SECONDS)
            timestamp, _signatures = stripe.WebhookSignature._get_timestamp_and_signatures(header, "v1")
        except stripe.SignatureVerificationError:
            raise CallbackRejected("bad signature", code="bad_signature") from None
        except ValueError:  # signed, but not an event
            raise CallbackRejected("bad payload", code="bad_payload") from None
        event = json.loads(payload)  # verified above: plain dicts from here on
        if timestamp > time.time() + TOLERANCE_SECONDS:  # the library only refuses old timestamps
            raise CallbackRejected("timestamp in the future", code="bad_signature")
        if str(event.get("id", "")) != str(data.get("event_id", "")):
            raise CallbackRejected("bad payload", code="bad_payload")
        if bool(event.get("livemode")) != secret_key.startswith(("sk_live_", "rk_live_")):
            raise CallbackRejected("live/test mode mismatch", code="wrong_merchant")
        kind = event.get("type")
        if kind not in SUCCESS_EVENTS and kind not in REFUND_EVENTS and kind != CHARGE_REFUNDED:
            raise CallbackRejected("event not handled", code="event_ignored")
        if PaymentCallback.objects.filter(
            provider=CODE, accepted=True, error_code="", payload__event_id=event["id"]
        ).exists():
            raise CallbackRejected("event already applied", code="event_already_applied")
        if kind in REFUND_EVENTS:
            return (self._refund_notice((event.get("data") or {}).get("object")),)
        if kind == CHARGE_REFUNDED:
            return self._charge_refund_notices((event.get("data") or {}).get("object"), _config, secret_key)
        session = (event.get("data") or {}).get("object") or {}
        if not isinstance(session, dict):
            raise CallbackRejected("bad payload", code="bad_payload")
        if session.get("payment_status") != "paid":
            raise CallbackRejected("checkout session not paid", code="not_paid")
        token = str(session.get("client_reference_id") or "")
        if not token or str((session.get("metadata") or {}).get("token", token)) != token:
            raise CallbackRejected("payment reference missing", code="bad_payload")
        currency = str(session.get("currency") or "").upper()
        return CallbackData(
            token=token,
            external_id=str(session.get("id", ""))[:128],
            amount=from_minor_units(session.get("amount_total"), currency),
            currency=currency,
            merchant=MERCHANT,
            succeeded=True,
            reference=str(session.get("payment_intent") or "")[:128],
        )

    def _refund_notice(self, refund) -> RefundNotice:
        """A Stripe Refund object (from a verified event or Stripe's API) as a refund notice."""
        if not isinstance(refund, dict) or not str(refund.get("id", "")).startswith("re_"):
            raise CallbackRejected("bad payload", code="bad_payload")
        currency = str(refund.get("currency") or "").upper()
        payment_intent = refund.get("payment_intent")
        if isinstance(payment_intent, dict):
            payment_intent = payment_intent.get("id")
        return RefundNotice(
            payment_reference=str(payment_intent or "")[:128],
            gateway_refund_id=str(refund["id"])[:128],
            amount=from_minor_units(refund.get("amount"), currency),
            currency=currency,
            status=str(refund.get("status") or "")[:32],
            refund_token=str((refund.get("metadata") or {}).get("refund", ""))[:64],
            failure_reason=str(refund.get("failure_reason") or "")[:100],
        )

    def _charge_refund_notices(self, charge, config: dict, secret_key: str) -> tuple[RefundNotice, ...]:
        """The refunds of a refunded charge: listed in the event when Stripe includes them (older API
        versions), otherwise asked from Stripe (network I/O; the callback runs outside transactions)."""
        if not isinstance(charge, dict) or not str(charge.get("id", "")).startswith(("ch_", "py_")):
            raise CallbackRejected("bad payload", code="bad_payload")
        listed = charge.get("refunds") if isinstance(charge.get("refunds"), dict) else {}
        refunds = listed.get("data") if isinstance(listed.get("data"), list) and not listed.get("has_more") else None
        if refunds is None:
            try:
                page = self._client(config, secret_key).v1.refunds.list(params={"charge": charge["id"], "limit": 100})
                refunds = [refund.to_dict() for refund in page.auto_paging_iter()]
            except stripe.StripeError:
                raise CallbackRejected("stripe could not list the refunds", code="gateway_unreachable") from None
        return tuple(self._refund_notice(refund) for refund in refunds)

    def callback_response(self, *, accepted: bool) -> HttpResponse:
        return HttpResponse(
            "ok" if accepted else "rejected", content_type="text/plain", status=200 if accepted else 400
        )
