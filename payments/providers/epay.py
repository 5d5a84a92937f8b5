"""易支付 (epay V1, MD5 protocol): redirect to ``submit.php``, notification to our callback URL.

A notification is trusted only when its MD5 signature verifies, it names our pid, says
``TRADE_SUCCESS`` and the gateway itself (``api.php?act=order``) confirms the trade is paid with the
same money. The settings (gateway URL, pid, payment type) and the key live in the shop's
``PaymentChannel`` row for ``epay``.
"""

from __future__ import annotations

import hashlib
import hmac
from decimal import Decimal, InvalidOperation
from urllib.parse import urlencode, urljoin

import httpx
from django.http import HttpResponse
from django.urls import reverse

from payments.channels import channel_secret, payment_channel_get
from payments.errors import CallbackRejected, ProviderUnavailable
from payments.providers import CallbackData

CODE = "epay"
QUERY_TIMEOUT_SECONDS = 5.0


def epay_sign(params: dict, key: str) -> str:
    """Lowercase hex MD5 of ``k=v&…`` (sorted by name, empty values and sign/sign_type left out) + key."""
    message = "&".join(
        f"{name}={params[name]}"
        for name in sorted(params)
        if name not in {"sign", "sign_type"} and params[name] not in (None, "")
    )
    return hashlib.md5((message + key).encode(), usedforsecurity=False).hexdigest()  # noqa: S324 (the protocol)


def validate_channel(*, config: dict, secret: str) -> dict[str, str]:
    """Field errors of an epay channel's settings and (when given) its merchant key."""
    errors: dict[str, str] = {}
    gateway = str(config.get("gateway_url", "")).strip()
    if not gateway.startswith(("https://", "http://")):
        errors["config"] = 'Set "gateway_url" to the gateway\'s address, e.g. "https://pay.example.com/".'
    elif not str(config.get("pid", "")).strip():
        errors["config"] = 'Set "pid" to your merchant id at the gateway.'
    if secret and (len(secret) < 8 or any(ch.isspace() for ch in secret)):
        key_problem = "The merchant key looks wrong (at least 8 characters, no spaces)."
        errors["secret"] = key_problem
    return errors


class EpayProvider:
    code = CODE
    label = "易支付 (epay)"
    # epay gateways send their notification as a GET request to notify_url.
    callback_via_get = True
    validate_channel = staticmethod(validate_channel)

    def _settings(self, *, enabled_only: bool) -> tuple[str, str, str, str]:
        """(gateway base URL, pid, key, pay type) of the current shop's channel."""
        channel = payment_channel_get(CODE, enabled_only=enabled_only)
        if channel is None:
            raise ProviderUnavailable()
        try:
            key = channel_secret(channel)
        except Exception:  # a key that no longer decrypts (rotated away): treat as not configured
            raise ProviderUnavailable() from None
        gateway = str(channel.config.get("gateway_url", "")).strip()
        pid = str(channel.config.get("pid", "")).strip()
        if not (gateway and pid and key):
            raise ProviderUnavailable()
        return gateway.rstrip("/") + "/", pid, key, str(channel.config.get("pay_type", "alipay"))

    def expected_merchant(self) -> str:
        try:
            return self._settings(enabled_only=False)[1]
        except ProviderUnavailable:
            return ""

    def start_url(self, *, attempt, request) -> str:
        from core.urls import shop_base_url

        gateway, pid, key, pay_type = self._settings(enabled_only=True)
        base = shop_base_url()
        if attempt.order_id is not None:
            name = f"Order {attempt.order.number}"
            return_url = base + reverse("order-detail", kwargs={"number": attempt.order.number})
        else:
            name = f"Payment {attempt.pk}"
            return_url = base + "/"
        return_url = attempt.return_url or return_url
        params = {
            "pid": pid,
            "type": pay_type,
            "out_trade_no": attempt.token,
            "notify_url": base + reverse("payment-callback", kwargs={"provider": CODE}),
            "return_url": return_url,
            "name": name,
            "money": f"{attempt.amount:.2f}",
        }
        params["sign"] = epay_sign(params, key)
        params["sign_type"] = "MD5"
        return urljoin(gateway, "submit.php") + "?" + urlencode(params)

    def parse_callback(self, data: dict) -> CallbackData:
        from ledger.services import shop_currency

        try:
            gateway, pid, key, _pay_type = self._settings(enabled_only=False)
        except ProviderUnavailable:
            raise CallbackRejected("epay is not configured", code="channel_unavailable") from None
        params = {str(name): str(value) for name, value in data.items()}
        signature = params.get("sign", "").lower().encode()
        if not signature or not hmac.compare_digest(signature, epay_sign(params, key).encode()):
            raise CallbackRejected("bad signature", code="bad_signature")
        if params.get("pid") != pid:
            raise CallbackRejected("wrong merchant", code="wrong_merchant")
        if params.get("trade_status") != "TRADE_SUCCESS":
            raise CallbackRejected("not a successful trade", code="not_paid")
        amount = _money(params.get("money", ""))
        token, trade_no = params.get("out_trade_no", ""), params.get("trade_no", "")
        if not (token and trade_no):
            raise CallbackRejected("trade numbers missing", code="bad_payload")
        # Network I/O here: before payment_callback_handle opens its transaction and takes locks.
        _confirm_with_gateway(gateway=gateway, pid=pid, key=key, token=token, amount=amount)
        return CallbackData(
            token=token,
            external_id=trade_no,
            amount=amount,
            currency=shop_currency(),  # epay has no currency: it is always the shop's
            merchant=pid,
            succeeded=True,
        )

    def callback_response(self, *, accepted: bool) -> HttpResponse:
        # Anything but "success" makes the gateway retry the notification later.
        return HttpResponse(
            "success" if accepted else "fail", content_type="text/plain", status=200 if accepted else 400
        )


def _money(value: str) -> Decimal:
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise CallbackRejected("bad amount", code="bad_amount") from None
    if not amount.is_finite() or amount <= 0:
        raise CallbackRejected("bad amount", code="bad_amount")
    return amount


def _confirm_with_gateway(*, gateway: str, pid: str, key: str, token: str, amount: Decimal) -> None:
    """Ask the gateway whether the trade is really paid, with this money. Rejections here are retryable."""
    url = urljoin(gateway, "api.php")
    try:
        response = httpx.get(
            url,
            params={"act": "order", "pid": pid, "key": key, "out_trade_no": token},
            timeout=QUERY_TIMEOUT_SECONDS,
        )
        response.raise_for_status()
        order = response.json()
    except (httpx.HTTPError, ValueError):
        # The URL carries the key: nothing of the exception is logged or kept.
        raise CallbackRejected("payment gateway could not be queried", code="gateway_query_failed") from None
    if not isinstance(order, dict) or str(order.get("code")) != "1":
        raise CallbackRejected("payment gateway does not know the trade", code="gateway_query_failed")
    if str(order.get("out_trade_no", token)) != token or str(order.get("status")) != "1":
        raise CallbackRejected("payment gateway says the trade is not paid", code="gateway_not_paid")
    try:
        confirmed = Decimal(str(order.get("money")))
    except InvalidOperation:
        raise CallbackRejected("payment gateway answered without money", code="gateway_query_failed") from None
    if confirmed != amount:
        raise CallbackRejected("payment gateway reports another amount", code="gateway_amount_mismatch")
