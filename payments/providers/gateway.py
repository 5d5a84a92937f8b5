"""The configurable HTTP gateway: a provider whose protocol is a *recipe* set in the shop admin.

An operator onboards a regional gateway without code: how to create a payment (URL, method, body
format, which of our values go into which of their parameters), where the answer keeps the pay URL,
how a notification names the order, amount, currency, status, trade number and merchant, and how
both sides are signed. The recipe is the channel's ``config``; the key is the channel's encrypted
secret. Each configured gateway has its own provider code, ``gw-<slug>``, so a shop may run several;
notifications reach ``/payments/callback/gw-<slug>/`` and go through the one callback pipeline
(``payments.services.payment_callback_handle``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
from django.http import HttpResponse
from django.urls import reverse

from payments.errors import CallbackRejected, GatewayRecipeInvalid, GatewayRequestFailed, ProviderUnavailable
from payments.providers import CallbackData
from payments.providers.gateway_recipe import (
    HEADER_SIGNATURE_KEY,
    PLACEHOLDER_RE,
    SLUG_RE,
    gateway_code,
    is_gateway_code,
    outbound_url_check,
    recipe_check,
    recipe_errors,
    recipe_normalize,
)

REQUEST_TIMEOUT_SECONDS = 10.0


# --- Saving ---------------------------------------------------------------------------------------


def configured_gateway_save(
    *,
    channel,
    slug: str | None,
    name: str,
    is_enabled: bool,
    sort_order: int,
    recipe: dict,
    secret: str = "",
    fees_and_limits: dict | None = None,
):
    """Create (``slug`` given) or update a configured gateway's channel. The recipe is checked whole
    (``GatewayRecipeInvalid``); an empty ``secret`` keeps the stored key."""
    from payments.channels import payment_channel_save

    if slug is not None and not SLUG_RE.match(slug):
        raise GatewayRecipeInvalid("Use lowercase letters, digits and dashes.", field="slug")
    checked = recipe_check(recipe)
    return payment_channel_save(
        channel=channel,
        provider=gateway_code(slug) if slug is not None else channel.provider,
        name=name,
        is_enabled=is_enabled,
        sort_order=sort_order,
        config=checked,
        secret=secret,
        fees_and_limits=fees_and_limits,
    )


# --- Signing --------------------------------------------------------------------------------------


def _text(value) -> str:
    """How a parameter's value is written into the signed string (JSON numbers keep their digits)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return str(value)


def _excluded(sign: dict) -> set[str]:
    return {name for name in (sign["field"], sign["sign_type_field"], *(sign["exclude"] or [])) if name}


def signing_string(params: dict, sign: dict, key: str) -> str:
    """The exact text that is hashed (the key included where the recipe puts it, unless HMAC)."""
    if sign["source"] == "template":
        message = PLACEHOLDER_RE.sub(
            lambda m: key if m.group(1) == "key" else _text(dig(params, m.group(1))), str(sign["template"])
        )
    else:
        excluded = _excluded(sign)
        message = "&".join(
            f"{name}={_text(params[name])}"
            for name in sorted(params)
            if name not in excluded and name != HEADER_SIGNATURE_KEY and _text(params[name]) != ""
        )
    if sign["key_placement"] == "append":
        message += key
    elif sign["key_placement"] == "append_param":
        message += f"&{sign['key_param']}={key}"
    return message


def gateway_sign(params: dict, sign: dict, key: str) -> str:
    """The signature of ``params`` under the recipe's ``signature`` section."""
    message = signing_string(params, sign, key).encode()
    if sign["algorithm"] == "hmac_sha256":
        digest = hmac.new(key.encode(), message, hashlib.sha256).hexdigest()
    elif sign["algorithm"] == "sha256":
        digest = hashlib.sha256(message).hexdigest()
    else:
        digest = hashlib.md5(message, usedforsecurity=False).hexdigest()  # noqa: S324 (gateways' protocol)
    return digest.upper() if sign["case"] == "upper" else digest


def dig(document, path: str):
    """The value at a dotted path (``data.pay_url``, ``items.0.id``), or None. A name that itself
    contains dots (a form field ``data.amount``) is found as it is."""
    if isinstance(document, dict) and path in document:
        return document[path]
    node = document
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


# --- Creating a payment ---------------------------------------------------------------------------


@dataclass
class CreateRequest:
    method: str
    url: str
    params: dict
    headers: dict
    format: str
    signed_string: str  # with the key in it: shown only masked

    def full_url(self) -> str:
        if self.format in ("redirect", "query"):
            parts = urlsplit(self.url)
            query = "&".join(filter(None, [parts.query, urlencode(self.params)]))
            return urlunsplit(parts._replace(query=query))
        return self.url


@dataclass
class CreateOutcome:
    request: CreateRequest
    status_code: int | None = None
    body: str = ""
    pay_url: str = ""
    qr_code: str = ""
    trade_no: str = ""
    error: str = ""
    errors: list[str] = field(default_factory=list)


def create_request_build(*, recipe: dict, key: str, values: dict) -> CreateRequest:
    """Our ``values`` (see ``OUR_FIELDS``) mapped to the gateway's names, constants added, signed."""
    create, sign = recipe["create"], recipe["signature"]
    params: dict = dict(create["constants"] or {})
    for ours, theirs in (create["fields"] or {}).items():
        if theirs:
            value = values.get(ours, "")
            # In a JSON body, counts stay numbers; elsewhere every value is text.
            params[theirs] = value if create["format"] == "json" and isinstance(value, int) else str(value)
    if sign["sign_type_field"]:
        params[sign["sign_type_field"]] = sign["sign_type_value"]
    signature = gateway_sign(params, sign, key)
    headers: dict = {}
    if sign["header"]:
        headers[sign["header"]] = signature
    else:
        params[sign["field"]] = signature
    return CreateRequest(
        method=create["method"],
        url=create["url"],
        params=params,
        headers=headers,
        format=create["format"],
        signed_string=signing_string(params, sign, key),
    )


def _json_request(request: CreateRequest, outcome: CreateOutcome):
    """Send ``request`` (URL checked first, no redirects followed) and return its JSON answer, or None
    with ``outcome.error`` saying why. The error never contains the URL or parameters (they may carry
    the key)."""
    try:
        outbound_url_check(request.url)
    except GatewayRequestFailed as exc:
        outcome.error = exc.message
        return None
    kwargs: dict = {"headers": request.headers}
    if request.format == "json":
        kwargs["json"] = request.params
    elif request.format == "form":
        kwargs["data"] = request.params
    else:
        kwargs["params"] = request.params
    try:
        with httpx.Client(timeout=REQUEST_TIMEOUT_SECONDS, follow_redirects=False, trust_env=False) as client:
            answer = client.request(request.method, request.url, **kwargs)
    except httpx.TimeoutException:
        outcome.error = f"The gateway did not answer within {REQUEST_TIMEOUT_SECONDS:g} s."
        return None
    except httpx.HTTPError as exc:
        outcome.error = f"Could not reach the gateway: {type(exc).__name__}."
        return None
    outcome.status_code = answer.status_code
    outcome.body = answer.text[:4000]
    if not 200 <= answer.status_code < 300:
        outcome.error = f"The gateway answered HTTP {answer.status_code}."
        return None
    try:
        return json.loads(answer.content, parse_float=Decimal)
    except ValueError:
        outcome.error = "The gateway's answer is not JSON."
        return None


def create_request_send(*, recipe: dict, request: CreateRequest) -> CreateOutcome:
    """Send a server-to-server create request and read the answer with the response mapping.

    Never raises: what went wrong is in ``error`` (network, HTTP status, not JSON, not a success)."""
    outcome = CreateOutcome(request=request)
    document = _json_request(request, outcome)
    if outcome.error:
        return outcome
    response = recipe["response"]
    for name in ("pay_url", "qr_code", "trade_no"):
        if response[name]:
            setattr(outcome, name, _text(dig(document, response[name])))
    marker = dig(document, response["success_path"])
    if _text(marker) != str(response["success_value"]):
        outcome.error = (
            f"The gateway did not report success: {response['success_path']} is "
            f"“{_text(marker) if marker is not None else '(missing)'}”, expected “{response['success_value']}”."
        )
        return outcome
    target = outcome.pay_url or outcome.qr_code
    if not target.startswith(("https://", "http://")):
        outcome.error = "The gateway's answer has no web address to send the customer to."
    return outcome


# --- The order query before delivery --------------------------------------------------------------


def query_request_build(*, recipe: dict, key: str, token: str, trade_no: str) -> CreateRequest:
    """The order query for our ``token`` / the gateway's ``trade_no``: mapped fields and constants,
    signed like the create request when the recipe says so, the key added as a parameter (unsigned)
    when the gateway wants it that way."""
    query, sign = recipe["query"], recipe["signature"]
    values = {"out_trade_no": token, "trade_no": trade_no, "timestamp": int(time.time())}
    values["nonce"] = secrets.token_hex(16)
    params: dict = dict(query["constants"] or {})
    for ours, theirs in (query["fields"] or {}).items():
        if theirs:
            value = values.get(ours, "")
            params[theirs] = value if query["format"] == "json" and isinstance(value, int) else str(value)
    headers: dict = {}
    signed_string = ""
    if query["signed"] is True:
        if sign["sign_type_field"]:
            params[sign["sign_type_field"]] = sign["sign_type_value"]
        signature = gateway_sign(params, sign, key)
        signed_string = signing_string(params, sign, key)
        if sign["header"]:
            headers[sign["header"]] = signature
        else:
            params[sign["field"]] = signature
    if query["key_param"]:
        params[query["key_param"]] = key
    return CreateRequest(
        method=query["method"],
        url=query["url"],
        params=params,
        headers=headers,
        format=query["format"],
        signed_string=signed_string,
    )


def query_confirm(*, recipe: dict, key: str, parsed: CallbackData) -> None:
    """Ask the gateway whether the notified payment is really paid, with the same amount; raises
    ``CallbackRejected`` otherwise (refused notifications are retried by the gateway). Network I/O:
    called before the callback pipeline opens its transaction."""
    query = recipe["query"]
    request = query_request_build(recipe=recipe, key=key, token=parsed.token, trade_no=parsed.external_id)
    outcome = CreateOutcome(request=request)
    document = _json_request(request, outcome)
    if outcome.error or not isinstance(document, dict):
        raise CallbackRejected("payment gateway could not be queried", code="gateway_query_failed")
    if query["success_path"] and _text(dig(document, query["success_path"])) != str(query["success_value"]):
        raise CallbackRejected("payment gateway does not know the trade", code="gateway_query_failed")
    if query["order_path"] and _text(dig(document, query["order_path"])) != parsed.token:
        raise CallbackRejected("payment gateway answered about another order", code="gateway_not_paid")
    if _text(dig(document, query["status_path"])) != str(query["status_paid"]):
        raise CallbackRejected("payment gateway says the trade is not paid", code="gateway_not_paid")
    try:
        confirmed = _amount(dig(document, query["amount_path"]), unit=query["amount_unit"], currency=parsed.currency)
    except CallbackRejected:
        raise CallbackRejected("payment gateway answered without an amount", code="gateway_query_failed") from None
    if confirmed != parsed.amount:
        raise CallbackRejected("payment gateway reports another amount", code="gateway_amount_mismatch")


# --- Callbacks ------------------------------------------------------------------------------------


def callback_parse(*, recipe: dict, key: str, data: dict, shop_currency: str) -> CallbackData:
    """Verify a notification's signature against the recipe and read it with the callback mapping."""
    sign, mapping = recipe["signature"], recipe["callback"]
    params = {name: value for name, value in data.items() if name != HEADER_SIGNATURE_KEY}
    given = data.get(HEADER_SIGNATURE_KEY, "") if sign["header"] else params.get(sign["field"], "")
    expected = gateway_sign(params, sign, key)
    if not given or not hmac.compare_digest(_text(given).lower().encode(), expected.lower().encode()):
        raise CallbackRejected("bad signature", code="bad_signature")
    token = _text(dig(params, mapping["order"]))
    trade_no = _text(dig(params, mapping["trade_no"]))
    if not (token and trade_no):
        raise CallbackRejected("trade numbers missing", code="bad_payload")
    currency = _text(dig(params, mapping["currency"])).upper() if mapping["currency"] else shop_currency
    amount = _amount(dig(params, mapping["amount"]), unit=mapping["amount_unit"], currency=currency)
    status = _text(dig(params, mapping["status"]))
    return CallbackData(
        token=token,
        external_id=trade_no[:128],
        amount=amount,
        currency=currency,
        merchant=_text(dig(params, mapping["merchant"])) if mapping["merchant"] else "",
        succeeded=status == str(mapping["status_success"]),
    )


def _amount(value, *, unit: str, currency: str) -> Decimal:
    from payments.providers.stripe_provider import from_minor_units

    if unit == "cents":
        text = _text(value)
        if not (text.isascii() and text.isdigit()):
            raise CallbackRejected("bad amount", code="bad_amount")
        return from_minor_units(int(text), currency)
    try:
        amount = Decimal(_text(value))
    except InvalidOperation:
        raise CallbackRejected("bad amount", code="bad_amount") from None
    if not amount.is_finite() or amount <= 0:
        raise CallbackRejected("bad amount", code="bad_amount")
    return amount


def callback_sample(*, recipe: dict, key: str, token: str, amount: Decimal, currency: str) -> dict:
    """A notification as the gateway would send it for a paid ``amount``, signed with the recipe."""
    from payments.providers.stripe_provider import to_minor_units

    mapping, sign = recipe["callback"], recipe["signature"]
    data: dict = {
        mapping["order"]: token,
        mapping["trade_no"]: "SAMPLE" + secrets.token_hex(6).upper(),
        mapping["status"]: mapping["status_success"],
        mapping["amount"]: str(to_minor_units(amount, currency)) if mapping["amount_unit"] == "cents" else f"{amount}",
    }
    if mapping["currency"]:
        data[mapping["currency"]] = currency
    if mapping["merchant"]:
        data[mapping["merchant"]] = mapping["merchant_value"]
    data = _nest(data)
    if sign["sign_type_field"]:
        data[sign["sign_type_field"]] = sign["sign_type_value"]
    signature = gateway_sign(data, sign, key)
    if sign["header"]:
        data[HEADER_SIGNATURE_KEY] = signature
    else:
        data[sign["field"]] = signature
    return data


def _nest(flat: dict) -> dict:
    """``{"data.amount": 1}`` → ``{"data": {"amount": 1}}`` (dotted callback fields of a JSON body)."""
    nested: dict = {}
    for path, value in flat.items():
        node = nested
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def callback_body_parse(*, body: bytes, headers, recipe: dict) -> dict:
    """A POSTed notification as a dict: a JSON object or form fields; a header signature kept aside."""
    text = body.decode("utf-8", errors="replace").strip()
    data: dict = {}
    if text.startswith("{"):
        try:
            parsed = json.loads(text, parse_float=Decimal)
        except ValueError:
            parsed = None
        data = parsed if isinstance(parsed, dict) else {}
    elif text:
        data = dict(parse_qsl(text, keep_blank_values=True))
    data.pop(HEADER_SIGNATURE_KEY, None)
    header = recipe["signature"]["header"]
    if header and headers.get(header):
        data[HEADER_SIGNATURE_KEY] = headers.get(header)
    return data


# --- The provider ---------------------------------------------------------------------------------


class ConfiguredGatewayProvider:
    """One shop's configured gateway, bound to its channel row (looked up per request)."""

    # Gateways notify with GET or POST, form fields or JSON; the signature decides, not the method.
    callback_via_get = True
    callback_raw = True

    def __init__(self, channel) -> None:
        self.channel = channel
        self.code = channel.provider
        self.label = channel.name
        self.recipe = recipe_normalize(channel.config)

    def _key(self) -> str:
        from payments.channels import channel_secret

        try:
            return channel_secret(self.channel)
        except Exception:  # a key that no longer decrypts (rotated away): treat as not configured
            return ""

    def _usable_recipe(self) -> dict | None:
        return None if recipe_errors(self.recipe, check_url=False) else self.recipe

    def expected_merchant(self) -> str:
        mapping = self.recipe["callback"]
        return str(mapping["merchant_value"]) if mapping["merchant"] else ""

    def start_url(self, *, attempt, request) -> str:
        from core.http import client_ip
        from core.urls import shop_base_url

        recipe, key = self._usable_recipe(), self._key()
        if not (self.channel.is_enabled and recipe and key):
            raise ProviderUnavailable()
        base = shop_base_url()
        if attempt.order_id is not None:
            subject = f"Order {attempt.order.number}"
            return_url = base + reverse("order-detail", kwargs={"number": attempt.order.number})
        else:
            subject = f"Payment {attempt.pk}"
            return_url = base + "/"
        values = payment_values(
            token=attempt.token,
            amount=attempt.amount,
            currency=attempt.currency,
            subject=subject,
            notify_url=base + reverse("payment-callback", kwargs={"provider": self.code}),
            return_url=return_url,
            client_ip=(client_ip(request) if request is not None else "") or "",
        )
        built = create_request_build(recipe=recipe, key=key, values=values)
        if built.format == "redirect":
            try:
                outbound_url_check(built.url)
            except GatewayRequestFailed:
                raise ProviderUnavailable() from None
            return built.full_url()
        outcome = create_request_send(recipe=recipe, request=built)
        if outcome.error:
            raise GatewayRequestFailed()  # the customer sees a retry hint; staff see the detail in Test
        return outcome.pay_url or outcome.qr_code

    def raw_callback_data(self, *, body: bytes, headers) -> dict:
        return callback_body_parse(body=body, headers=headers, recipe=self.recipe)

    def parse_callback(self, data: dict) -> CallbackData:
        from ledger.services import shop_currency

        recipe, key = self._usable_recipe(), self._key()
        if not (recipe and key):
            raise CallbackRejected("gateway is not configured", code="channel_unavailable")
        parsed = callback_parse(recipe=recipe, key=key, data=data, shop_currency=shop_currency())
        if parsed.succeeded and recipe["query"]["url"]:
            query_confirm(recipe=recipe, key=key, parsed=parsed)
        return parsed

    def callback_response(self, *, accepted: bool) -> HttpResponse:
        mapping = self.recipe["callback"]
        body = str(mapping["reply_accepted"] if accepted else mapping["reply_rejected"])
        content_type = "application/json" if body.lstrip().startswith("{") else "text/plain"
        # Anything but the accepted reply makes the gateway retry the notification later.
        return HttpResponse(body, content_type=content_type, status=200 if accepted else 400)


def payment_values(
    *, token: str, amount: Decimal, currency: str, subject: str, notify_url: str, return_url: str, client_ip: str
) -> dict:
    """Our side of a create request, by the names of ``OUR_FIELDS``."""
    from payments.providers.stripe_provider import to_minor_units

    return {
        "out_trade_no": token,
        "amount": f"{amount:.2f}",
        "amount_cents": to_minor_units(amount, currency),
        "currency": currency,
        "subject": subject,
        "notify_url": notify_url,
        "return_url": return_url,
        "client_ip": client_ip,
        "timestamp": int(time.time()),
        "nonce": secrets.token_hex(16),
    }


def configured_gateway_get(code: str) -> ConfiguredGatewayProvider | None:
    """The current shop's configured gateway ``code`` (enabled or not), or None."""
    from payments.channels import payment_channel_get

    if not is_gateway_code(code):
        return None
    channel = payment_channel_get(code)
    return ConfiguredGatewayProvider(channel) if channel is not None else None


# --- The admin's "Test" ---------------------------------------------------------------------------

MASK = "••••••"


@dataclass
class GatewayTrial:
    """What a test run sent and understood; every text has the key masked."""

    problems: list[tuple[str, str]]
    request: CreateRequest | None = None
    sent: bool = False
    outcome: CreateOutcome | None = None
    callback: dict = field(default_factory=dict)
    callback_parsed: CallbackData | None = None
    callback_error: str = ""


def _masked(value, key: str):
    if isinstance(value, dict):
        return {name: _masked(item, key) for name, item in value.items()}
    if isinstance(value, str) and key:
        return value.replace(key, MASK)
    return value


def gateway_trial(*, channel, client_ip: str = "") -> GatewayTrial:
    """Run the channel's recipe once for a made-up 1.00 payment: send the create request (a customer
    redirect is only built, not followed), read the answer, and sign and verify a sample notification.

    Nothing is stored; the key never appears in the result."""
    from core.urls import shop_base_url
    from ledger.services import shop_currency
    from payments.channels import channel_secret

    recipe = recipe_normalize(channel.config)
    trial = GatewayTrial(problems=recipe_errors(recipe))
    try:
        key = channel_secret(channel)
    except Exception:
        key = ""
    if not key:
        trial.problems.append(("secret", "No key is stored: save the key first."))
    if trial.problems:
        return trial
    currency, amount = shop_currency(), Decimal("1.00")
    token = "TEST-" + secrets.token_hex(8)
    base = shop_base_url()
    values = payment_values(
        token=token,
        amount=amount,
        currency=currency,
        subject="Test payment",
        notify_url=base + reverse("payment-callback", kwargs={"provider": channel.provider}),
        return_url=base + "/",
        client_ip=client_ip,
    )
    built = create_request_build(recipe=recipe, key=key, values=values)
    if built.format != "redirect":
        outcome = create_request_send(recipe=recipe, request=built)
        trial.sent = True
        outcome.body = _masked(outcome.body, key)
        trial.outcome = outcome
    built.signed_string = built.signed_string.replace(key, "{key}")
    built.params = _masked(built.params, key)
    built.headers = _masked(built.headers, key)
    trial.request = built
    sample = callback_sample(recipe=recipe, key=key, token=token, amount=amount, currency=currency)
    try:
        trial.callback_parsed = callback_parse(recipe=recipe, key=key, data=sample, shop_currency=currency)
    except CallbackRejected as exc:
        trial.callback_error = f"{exc.code}: {exc.message}"
    trial.callback = _masked(sample, key)
    return trial
