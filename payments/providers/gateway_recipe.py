"""The recipe of a configurable gateway: its shape, the presets, and the one validation of it.

A recipe is a plain dict stored as the channel's ``config`` (see ``EMPTY_RECIPE`` for every key);
``recipe_errors`` is what the admin form shows and what the provider checks before trusting one.
"""

from __future__ import annotations

import copy
import re

from payments.errors import GatewayRecipeInvalid, GatewayRequestFailed

PREFIX = "gw-"
SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,27}[a-z0-9])?$")  # provider codes are at most 32 characters
PATH_RE = re.compile(r"^[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)*$")
PARAM_RE = re.compile(r"^[A-Za-z0-9_\-.\[\]]{1,64}$")
PLACEHOLDER_RE = re.compile(r"\{([A-Za-z0-9_\-.]+)\}")
# Where a signature sent in a header is kept in the callback data (never a parameter the gateway sends).
HEADER_SIGNATURE_KEY = "__signature_header__"

# Our values a create request can carry, in the order the admin form lists them.
OUR_FIELDS = (
    "out_trade_no",
    "amount",
    "amount_cents",
    "currency",
    "subject",
    "notify_url",
    "return_url",
    "client_ip",
    "timestamp",
    "nonce",
)
FORMATS = ("redirect", "form", "json", "query")
# Our values an order query can carry, and how it is sent (always a server request).
QUERY_FIELDS = ("out_trade_no", "trade_no", "timestamp", "nonce")
QUERY_FORMATS = ("query", "form", "json")
METHODS = ("GET", "POST")
ALGORITHMS = ("md5", "sha256", "hmac_sha256")
CASES = ("lower", "upper")
SOURCES = ("sorted", "template")
KEY_PLACEMENTS = ("append", "append_param", "hmac", "none")
AMOUNT_UNITS = ("major", "cents")


def gateway_code(slug: str) -> str:
    return PREFIX + slug


def is_gateway_code(code: str) -> bool:
    return code.startswith(PREFIX) and bool(SLUG_RE.match(code[len(PREFIX) :]))


# --- The recipe -----------------------------------------------------------------------------------

EMPTY_RECIPE: dict = {
    "create": {"url": "", "method": "POST", "format": "form", "fields": {}, "constants": {}},
    "response": {"pay_url": "", "qr_code": "", "trade_no": "", "success_path": "", "success_value": ""},
    "callback": {
        "order": "",
        "amount": "",
        "amount_unit": "major",
        "currency": "",
        "status": "",
        "status_success": "",
        "trade_no": "",
        "merchant": "",
        "merchant_value": "",
        "reply_accepted": "success",
        "reply_rejected": "fail",
    },
    "signature": {
        "algorithm": "md5",
        "case": "lower",
        "source": "sorted",
        "template": "",
        "key_placement": "append",
        "key_param": "key",
        "field": "sign",
        "header": "",
        "sign_type_field": "",
        "sign_type_value": "",
        "exclude": [],
    },
    # Optional: ask the gateway about the order before applying a notification (empty URL: no query).
    "query": {
        "url": "",
        "method": "GET",
        "format": "query",
        "fields": {},  # our QUERY_FIELDS → the gateway's names
        "constants": {},
        "signed": False,  # signed like the create request (the signature section)
        "key_param": "",  # the key itself sent under this name (epay's api.php), not signed
        "success_path": "",
        "success_value": "",
        "order_path": "",  # optional: the answer must name our order number there
        "status_path": "",
        "status_paid": "",
        "amount_path": "",
        "amount_unit": "major",
    },
}

PRESETS: dict[str, tuple[str, dict]] = {
    # 易支付 V1: the customer is redirected to submit.php; MD5 over the sorted non-empty parameters
    # (sign and sign_type left out) followed directly by the key; notify says TRADE_SUCCESS.
    "epay": (
        "epay-style (易支付 V1, MD5, redirect)",
        {
            "create": {
                "url": "https://pay.example.com/submit.php",
                "method": "GET",
                "format": "redirect",
                "fields": {
                    "out_trade_no": "out_trade_no",
                    "amount": "money",
                    "subject": "name",
                    "notify_url": "notify_url",
                    "return_url": "return_url",
                },
                "constants": {"pid": "1001", "type": "alipay"},
            },
            "response": {"pay_url": "", "qr_code": "", "trade_no": "", "success_path": "", "success_value": ""},
            "callback": {
                "order": "out_trade_no",
                "amount": "money",
                "amount_unit": "major",
                "currency": "",
                "status": "trade_status",
                "status_success": "TRADE_SUCCESS",
                "trade_no": "trade_no",
                "merchant": "pid",
                "merchant_value": "1001",
                "reply_accepted": "success",
                "reply_rejected": "fail",
            },
            "signature": {
                "algorithm": "md5",
                "case": "lower",
                "source": "sorted",
                "template": "",
                "key_placement": "append",
                "key_param": "key",
                "field": "sign",
                "header": "",
                "sign_type_field": "sign_type",
                "sign_type_value": "MD5",
                "exclude": [],
            },
            # api.php?act=order&pid=…&key=…&out_trade_no=… → {"code": 1, "status": 1, "money": "15.00", …}
            "query": {
                "url": "https://pay.example.com/api.php",
                "method": "GET",
                "format": "query",
                "fields": {"out_trade_no": "out_trade_no"},
                "constants": {"act": "order", "pid": "1001"},
                "signed": False,
                "key_param": "key",
                "success_path": "code",
                "success_value": "1",
                "order_path": "out_trade_no",
                "status_path": "status",
                "status_paid": "1",
                "amount_path": "money",
                "amount_unit": "major",
            },
        },
    ),
    # A modern JSON API: JSON POST to create (answer {"code": 0, "data": {"pay_url", "trade_no"}}),
    # JSON notification, HMAC-SHA256 (hex) over the sorted non-empty parameters with the key as the
    # HMAC key, amounts in cents.
    "json_hmac": (
        "JSON + HMAC-SHA256",
        {
            "create": {
                "url": "https://api.gateway.example/v1/payments",
                "method": "POST",
                "format": "json",
                "fields": {
                    "out_trade_no": "merchant_order_id",
                    "amount_cents": "amount",
                    "currency": "currency",
                    "subject": "description",
                    "notify_url": "notify_url",
                    "return_url": "return_url",
                    "client_ip": "client_ip",
                    "timestamp": "timestamp",
                    "nonce": "nonce",
                },
                "constants": {"merchant_id": "M1001"},
            },
            "response": {
                "pay_url": "data.pay_url",
                "qr_code": "data.qr_code",
                "trade_no": "data.trade_no",
                "success_path": "code",
                "success_value": "0",
            },
            "callback": {
                "order": "merchant_order_id",
                "amount": "amount",
                "amount_unit": "cents",
                "currency": "currency",
                "status": "status",
                "status_success": "PAID",
                "trade_no": "trade_no",
                "merchant": "merchant_id",
                "merchant_value": "M1001",
                "reply_accepted": '{"code": 0}',
                "reply_rejected": '{"code": 1}',
            },
            "signature": {
                "algorithm": "hmac_sha256",
                "case": "lower",
                "source": "sorted",
                "template": "",
                "key_placement": "hmac",
                "key_param": "key",
                "field": "sign",
                "header": "",
                "sign_type_field": "",
                "sign_type_value": "",
                "exclude": [],
            },
        },
    ),
}


def recipe_normalize(config: dict | None) -> dict:
    """The recipe in ``config`` with every section and key present (missing ones from the defaults)."""
    recipe = copy.deepcopy(EMPTY_RECIPE)
    for section, defaults in EMPTY_RECIPE.items():
        given = (config or {}).get(section)
        if isinstance(given, dict):
            recipe[section].update({k: v for k, v in given.items() if k in defaults})
    return recipe


def recipe_errors(recipe: dict, *, check_url: bool = True) -> list[tuple[str, str]]:
    """Everything wrong with a recipe, as (``section.key``, message); empty when it can be used.

    With ``check_url`` the URL's host is resolved and refused when private or loopback (SSRF); the
    check runs again before every request, so notifications never wait on DNS."""
    errors: list[tuple[str, str]] = []
    create, response, callback, sign = (recipe[s] for s in ("create", "response", "callback", "signature"))

    def need(path: str, value, message: str) -> None:
        if not str(value or "").strip():
            errors.append((path, message))

    def path_ok(path: str, value: str) -> None:
        if value and not PATH_RE.match(value):
            errors.append((path, f"“{value}” is not a field path: names joined by dots, e.g. data.pay_url."))

    def choice(path: str, value, allowed: tuple[str, ...]) -> None:
        if value not in allowed:
            errors.append((path, f"“{value}” is not one of: {', '.join(allowed)}."))

    # create
    choice("create.format", create["format"], FORMATS)
    choice("create.method", create["method"], METHODS)
    if check_url:
        try:
            outbound_url_check(create["url"])
        except GatewayRequestFailed as exc:
            errors.append(("create.url", exc.message))
    elif not str(create["url"]).startswith(("https://", "http://")):
        errors.append(("create.url", "Give an http:// or https:// URL."))
    shapes = (("create", "fields", dict), ("create", "constants", dict), ("signature", "exclude", list))
    for section, key, kind in shapes:
        if not isinstance(recipe[section][key], kind):
            errors.append((f"{section}.{key}", "Malformed settings."))
            recipe[section][key] = kind()
    if create["format"] == "redirect" and create["method"] != "GET":
        errors.append(("create.method", "A customer redirect is a GET request."))
    if create["format"] in ("form", "json") and create["method"] != "POST":
        errors.append(("create.method", "A form or JSON body needs POST."))
    fields = create["fields"]
    if set(fields) - set(OUR_FIELDS):
        errors.append(("create.fields", "Unknown payment field."))
    mapped, constants = [str(name) for name in fields.values() if name], [str(name) for name in create["constants"]]
    for path, names in (("create.fields", mapped), ("create.constants", constants)):
        for name in names:
            if not PARAM_RE.match(name):
                errors.append((path, f"“{name}” is not a parameter name (letters, digits, _ - . [ ])."))
    names = mapped + constants
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        errors.append(("create.constants", "A parameter is given twice: " + ", ".join(duplicates) + "."))
    if not (fields.get("out_trade_no") and (fields.get("amount") or fields.get("amount_cents"))):
        errors.append(("create.fields", "The create request must carry our order number and an amount."))
    # response (only a server-to-server create has one)
    for key in ("pay_url", "qr_code", "trade_no", "success_path"):
        path_ok(f"response.{key}", response[key])
    if create["format"] != "redirect":
        if not (response["pay_url"] or response["qr_code"]):
            errors.append(("response.pay_url", "Say where the answer keeps the pay URL (or the QR code)."))
        need("response.success_path", response["success_path"], "Say which answer field marks success.")
        need("response.success_value", response["success_value"], "Give the value that marks success.")
    # callback
    need("callback.order", callback["order"], "Say which notification field holds our order number.")
    need("callback.amount", callback["amount"], "Say which notification field holds the amount.")
    need("callback.trade_no", callback["trade_no"], "Say which notification field holds the gateway's trade number.")
    need("callback.status", callback["status"], "Say which notification field holds the payment status.")
    need("callback.status_success", callback["status_success"], "Give the status value that means paid.")
    need("callback.reply_accepted", callback["reply_accepted"], "Give the reply the gateway expects.")
    need("callback.reply_rejected", callback["reply_rejected"], "Give the reply for a refused notification.")
    choice("callback.amount_unit", callback["amount_unit"], AMOUNT_UNITS)
    for key in ("order", "amount", "currency", "status", "trade_no", "merchant"):
        path_ok(f"callback.{key}", callback[key])
    if bool(callback["merchant"]) != bool(str(callback["merchant_value"]).strip()):
        errors.append(("callback.merchant_value", "Give both the merchant field and our merchant id, or neither."))
    # signature
    choice("signature.algorithm", sign["algorithm"], ALGORITHMS)
    choice("signature.case", sign["case"], CASES)
    choice("signature.source", sign["source"], SOURCES)
    choice("signature.key_placement", sign["key_placement"], KEY_PLACEMENTS)
    if (sign["algorithm"] == "hmac_sha256") != (sign["key_placement"] == "hmac"):
        errors.append(("signature.key_placement", "HMAC-SHA256 takes the key as the HMAC key, and only it does."))
    if sign["source"] == "template":
        need("signature.template", sign["template"], "Give the template of the signed string.")
    if sign["key_placement"] == "none" and "{key}" not in str(sign["template"]):
        errors.append(("signature.template", "Without a key placement the template must contain {key}."))
    if sign["key_placement"] == "append_param":
        need("signature.key_param", sign["key_param"], "Give the name the key is appended under.")
    if not (sign["field"] or sign["header"]):
        errors.append(("signature.field", "Say where the signature goes: a parameter or a header."))
    if sign["header"] and create["format"] == "redirect":
        errors.append(("signature.header", "A customer redirect cannot carry a header: use a parameter."))
    if bool(sign["sign_type_field"]) != bool(str(sign["sign_type_value"]).strip()):
        errors.append(("signature.sign_type_value", "Give both the sign type field and its value, or neither."))
    errors.extend(_query_errors(recipe["query"], check_url=check_url, path_ok=path_ok, need=need, choice=choice))
    return errors


def _query_errors(query: dict, *, check_url: bool, path_ok, need, choice) -> list[tuple[str, str]]:
    """What is wrong with the optional order query (nothing when it has no URL)."""
    errors: list[tuple[str, str]] = []
    for key, kind in (("fields", dict), ("constants", dict)):
        if not isinstance(query[key], kind):
            errors.append((f"query.{key}", "Malformed settings."))
            query[key] = kind()
    if not str(query["url"] or "").strip():
        return errors
    if check_url:
        try:
            outbound_url_check(query["url"])
        except GatewayRequestFailed as exc:
            errors.append(("query.url", exc.message))
    elif not str(query["url"]).startswith(("https://", "http://")):
        errors.append(("query.url", "Give an http:// or https:// URL."))
    choice("query.method", query["method"], METHODS)
    choice("query.format", query["format"], QUERY_FORMATS)
    if (query["format"] == "query") != (query["method"] == "GET"):
        errors.append(("query.method", "Parameters in the query string go with GET; a form or JSON body needs POST."))
    fields = query["fields"]
    if set(fields) - set(QUERY_FIELDS):
        errors.append(("query.fields", "Unknown query field."))
    if not (fields.get("out_trade_no") or fields.get("trade_no")):
        errors.append(("query.fields", "The order query must carry our order number or the gateway's trade number."))
    names = [str(name) for name in fields.values() if name] + [str(name) for name in query["constants"]]
    names += [query["key_param"]] if query["key_param"] else []
    for name in names:
        if not PARAM_RE.match(name):
            errors.append(("query.constants", f"“{name}” is not a parameter name (letters, digits, _ - . [ ])."))
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        errors.append(("query.constants", "A query parameter is given twice: " + ", ".join(duplicates) + "."))
    for key in ("success_path", "order_path", "status_path", "amount_path"):
        path_ok(f"query.{key}", query[key])
    need("query.status_path", query["status_path"], "Say which answer field holds the payment status.")
    need("query.status_paid", query["status_paid"], "Give the status value that means paid.")
    need("query.amount_path", query["amount_path"], "Say which answer field holds the paid amount.")
    choice("query.amount_unit", query["amount_unit"], AMOUNT_UNITS)
    if bool(query["success_path"]) != bool(str(query["success_value"]).strip()):
        errors.append(("query.success_value", "Give both the success field and its value, or neither."))
    return errors


def recipe_check(config: dict) -> dict:
    """The normalized recipe, or ``GatewayRecipeInvalid`` naming the first problem."""
    recipe = recipe_normalize(config)
    errors = recipe_errors(recipe)
    if errors:
        raise GatewayRecipeInvalid(errors[0][1], field=errors[0][0])
    return recipe


# --- Outbound URLs (SSRF) -------------------------------------------------------------------------


def outbound_url_check(url: str) -> str:
    """``url`` if the shop may send requests (or customers) there: http(s), no credentials, every
    address public. The project's one SSRF guard (the webhook one, with its
    ``WEBHOOK_ALLOW_PRIVATE_URLS`` switch for development and tests)."""
    from branch_api.provider.webhooks import WebhookUrlRefused, webhook_url_check

    try:
        return webhook_url_check(url)
    except WebhookUrlRefused as exc:
        raise GatewayRequestFailed(exc.message, field="url", code="gateway_url_refused") from None
