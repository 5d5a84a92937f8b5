"""Site A's outbound webhooks to branches, in the Standard Webhooks format (``standardwebhooks``).

Every event is one ``WebhookDelivery`` per subscribed, active endpoint of the branch, written in the
caller's transaction; sending is queued only after it commits, so no network I/O ever happens inside
a caller's transaction or lock. The body is ``{"type", "timestamp", "data"}`` (identical on every
attempt) and carries the headers ``webhook-id`` (the delivery's ``msg_…`` id, stable across retries
and replays), ``webhook-timestamp`` and ``webhook-signature`` (``Webhook(secret).sign``).

Events are thin: they say *what* changed and the branch pulls details through the signed API.

===========================  =======================================================================
type                         data
===========================  =======================================================================
``order.status_changed``     ``{"reference", "number", "status"}``
``product.updated``          ``{"product_ids"}`` — changed, or withdrawn (``changes`` lists it removed)
``stock.changed``            ``{"product_ids", "variant_ids"}``
``price.changed``            ``{"product_ids", "variant_ids", "full"}`` — ``full``: the branch's price
                             list changed, re-pull the whole catalog
``balance.low``              ``{"currency", "balance", "low_balance_threshold"}``
``ping``                     ``{"endpoint_id"}`` — sent by :func:`webhook_test` whatever the filter
===========================  =======================================================================

Outcomes: a 2xx answer succeeds. ``410 Gone`` disables the endpoint at once. Anything else (another
status, a timeout, a refused connection) is retried after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h,
20 h and 24 h (±10 % jitter) — ten attempts over about three days — and then gives up.

Auto-disable rule: an endpoint is disabled when it has failed without a single success for
``AUTO_DISABLE_AFTER`` (5 days, counted from the first failed attempt after its last success; any
success resets it). A count of consecutive failures was rejected as the rule: a busy endpoint reaches
any fixed count within minutes of a short outage. Both automatic disables e-mail the branch owner
(template ``webhook_disabled``); the branch re-enables with ``PATCH {"is_active": true}`` and replays
what it missed.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import random
import secrets
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import httpx
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import URLValidator
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from standardwebhooks import Webhook

from branch_api.provider import errors
from branch_api.provider.models import BranchPurchase, BranchTerms, WebhookDelivery, WebhookEndpoint
from branch_api.provider.services import balance_account_code, visible_products
from catalog.models import Product, Variant
from core.crypto import decrypt, encrypt
from ledger.models import Account
from tenants.models import Branch

logger = logging.getLogger(__name__)

ORDER_STATUS_CHANGED = "order.status_changed"
PRODUCT_UPDATED = "product.updated"
STOCK_CHANGED = "stock.changed"
PRICE_CHANGED = "price.changed"
BALANCE_LOW = "balance.low"
PING = "ping"
EVENT_TYPES = (ORDER_STATUS_CHANGED, PRODUCT_UPDATED, STOCK_CHANGED, PRICE_CHANGED, BALANCE_LOW)

RETRY_DELAYS = tuple(
    timedelta(**step)
    for step in (
        {"seconds": 5},
        {"minutes": 5},
        {"minutes": 30},
        {"hours": 2},
        {"hours": 5},
        {"hours": 10},
        {"hours": 14},
        {"hours": 20},
        {"hours": 24},
    )
)
RETRY_JITTER = 0.10
AUTO_DISABLE_AFTER = timedelta(days=5)
DEFAULT_TIMEOUT_SECONDS = 15.0
MAX_ENDPOINTS_PER_BRANCH = 10
# A retry further out than this is not held by the broker as an ETA message: the Redis transport
# redelivers unacknowledged messages after its visibility timeout (1 h) and workers keep ETA
# messages in memory. The sweeper queues such deliveries when they fall due.
ETA_HORIZON = timedelta(minutes=45)
# A self-queued retry runs this much after it falls due, so a timer firing early never finds it not due.
ETA_MARGIN = timedelta(seconds=1)
# The sweeper leaves deliveries this long past due to the task that was queued for them.
SWEEP_GRACE = timedelta(seconds=30)
KEEP_FINISHED_FOR = timedelta(days=30)
_PUBLIC = {"_schema_name": "public"}


class WebhookUrlRefused(errors.ApiError):
    status = 400
    code = "invalid"
    default_message = "The webhook URL is not allowed."


class EndpointDisabled(errors.ApiError):
    status = 409
    code = "endpoint_disabled"
    default_message = "This webhook endpoint is disabled; re-enable it first."


class EndpointLimitReached(errors.ApiError):
    status = 409
    code = "endpoint_limit"
    default_message = f"A branch may have at most {MAX_ENDPOINTS_PER_BRANCH} webhook endpoints."


# --- Endpoints ------------------------------------------------------------------------------------


def _secret_new() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def _secret_aad(branch_id: int) -> str:
    return f"webhook-endpoint|{branch_id}"


def endpoint_secret(endpoint: WebhookEndpoint) -> str:
    return decrypt(endpoint.secret_encrypted, aad=_secret_aad(endpoint.branch_id))


def _events_clean(events: Iterable[str]) -> list[str]:
    chosen = sorted(set(events))
    unknown = [e for e in chosen if e not in EVENT_TYPES]
    if unknown:
        raise errors.Invalid(f"Unknown event types: {', '.join(unknown)}.", field="events")
    return chosen


def webhook_endpoint_create(
    *, branch: Branch, url: str, events: Iterable[str] = (), description: str = ""
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint for ``branch``; returns it with its ``whsec_`` secret (shown once, kept encrypted)."""
    url = webhook_url_check(url)
    events = _events_clean(events)
    if WebhookEndpoint.objects.filter(branch=branch).count() >= MAX_ENDPOINTS_PER_BRANCH:
        raise EndpointLimitReached()
    secret = _secret_new()
    endpoint = WebhookEndpoint.objects.create(
        branch=branch,
        url=url,
        events=events,
        description=description,
        secret_encrypted=encrypt(secret, aad=_secret_aad(branch.pk)),
    )
    return endpoint, secret


def webhook_endpoint_update(
    *,
    endpoint: WebhookEndpoint,
    url: str | None = None,
    events: Iterable[str] | None = None,
    description: str | None = None,
    is_active: bool | None = None,
    rotate_secret: bool = False,
) -> tuple[WebhookEndpoint, str | None]:
    """Change what was given; returns the endpoint and the new secret when ``rotate_secret``."""
    fields = []
    if url is not None:
        endpoint.url = webhook_url_check(url)
        fields.append("url")
    if events is not None:
        endpoint.events = _events_clean(events)
        fields.append("events")
    if description is not None:
        endpoint.description = description
        fields.append("description")
    secret = None
    if rotate_secret:
        secret = _secret_new()
        endpoint.secret_encrypted = encrypt(secret, aad=_secret_aad(endpoint.branch_id))
        fields.append("secret_encrypted")
    if fields:
        endpoint.save(update_fields=fields)
    if is_active is True and not endpoint.is_active:
        webhook_endpoint_enable(endpoint=endpoint)
    elif is_active is False and endpoint.is_active:
        webhook_endpoint_disable(endpoint=endpoint, reason="Disabled by the branch.")
    endpoint.refresh_from_db()
    return endpoint, secret


def webhook_endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """Remove the endpoint and its delivery history (tasks still queued for it find nothing to do)."""
    endpoint.delete()


def webhook_endpoint_enable(*, endpoint: WebhookEndpoint) -> None:
    """Re-enable an endpoint with a clean failure record. Deliveries that failed meanwhile stay failed
    (replay them)."""
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        is_active=True, disabled_at=None, disabled_reason="", consecutive_failures=0, failing_since=None
    )


def webhook_endpoint_disable(*, endpoint: WebhookEndpoint, reason: str) -> bool:
    """Stop sending to ``endpoint``; its pending deliveries fail. Returns False when it already was off."""
    now = timezone.now()
    with transaction.atomic():
        changed = WebhookEndpoint.objects.filter(pk=endpoint.pk, is_active=True).update(
            is_active=False, disabled_at=now, disabled_reason=reason[:255]
        )
        if changed:
            WebhookDelivery.objects.filter(endpoint_id=endpoint.pk, status=WebhookDelivery.Status.PENDING).update(
                status=WebhookDelivery.Status.FAILED, next_attempt_at=None, last_error="The endpoint was disabled."
            )
    return bool(changed)


# --- SSRF guard -----------------------------------------------------------------------------------


def _private_allowed() -> bool:
    return settings.DEBUG or getattr(settings, "WEBHOOK_ALLOW_PRIVATE_URLS", False)


def _loopback_allowed() -> bool:
    return _private_allowed() or getattr(settings, "WEBHOOK_ALLOW_LOOPBACK", False)


def _is_localhost_name(host: str) -> bool:
    host = host.lower().rstrip(".")
    return host == "localhost" or host.endswith(".localhost")


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def _is_loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback


def _addresses(url: httpx.URL) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Every address ``url``'s host resolves to; refused unless all of them are public (or loopback
    targets are allowed and they are loopback, or private targets are allowed)."""
    host = url.raw_host.decode("ascii", errors="replace")
    refused = WebhookUrlRefused("The URL points at a private, loopback or reserved address.", field="url")
    if _is_localhost_name(host):
        # RFC 6761: *.localhost is loopback, and the resolver may not know the subdomains (glibc does
        # not), so dev branches (alpha.localhost) are reached on 127.0.0.1 with their own Host header.
        if not _loopback_allowed():
            raise refused
        return [ipaddress.ip_address("127.0.0.1")]
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise WebhookUrlRefused("The URL's host name does not resolve.", field="url") from exc
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses:
        raise WebhookUrlRefused("The URL's host name does not resolve.", field="url")
    if _private_allowed():
        return addresses
    loopback = _loopback_allowed()
    if not all(_is_public(a) or (loopback and _is_loopback(a)) for a in addresses):
        raise refused
    return addresses


def webhook_url_check(url: str) -> str:
    """The URL, if it is http(s) without credentials and every address of its host is public.

    Private, loopback, link-local and reserved targets are refused (SSRF) unless ``DEBUG`` or
    ``WEBHOOK_ALLOW_PRIVATE_URLS``; ``WEBHOOK_ALLOW_LOOPBACK`` (development, never production) lets
    loopback through, and ``localhost``/``*.localhost`` resolve to 127.0.0.1. The check runs again
    before every attempt, and the request is sent
    to the address that passed, so a host re-pointed at an internal address later is refused too.
    """
    url = (url or "").strip()
    try:
        URLValidator(schemes=["http", "https"])(url)
        parsed = httpx.URL(url)
    except (ValidationError, httpx.InvalidURL):
        raise WebhookUrlRefused("Give an http:// or https:// URL.", field="url") from None
    if parsed.userinfo:
        raise WebhookUrlRefused("The URL may not contain a user name or password.", field="url")
    _addresses(parsed)
    return url


# --- Emitting -------------------------------------------------------------------------------------


def _message_id() -> str:
    return "msg_" + secrets.token_urlsafe(18)


def _subscribes(event_type: str) -> Q:
    return Q(events=[]) | Q(events__contains=[event_type])


def webhook_queue(delivery_id: int, *, eta=None) -> None:
    """Queue one attempt (in Site A's schema, whatever schema the caller is in)."""
    from branch_api.provider.tasks import webhook_deliver_task

    webhook_deliver_task.apply_async(kwargs={"delivery_id": delivery_id}, eta=eta, headers=dict(_PUBLIC))


def _queue_on_commit(delivery_ids: list[int]) -> None:
    def queue() -> None:
        for delivery_id in delivery_ids:
            webhook_queue(delivery_id)

    # robust: a broker outage must not turn the caller's committed work into an error; the sweeper
    # sends what was not queued.
    transaction.on_commit(queue, robust=True)


def _delivery_create(endpoints: list[WebhookEndpoint], event_type: str, data: dict) -> list[WebhookDelivery]:
    now = timezone.now()
    payload = {
        "type": event_type,
        "timestamp": now.isoformat(),
        "data": json.loads(json.dumps(data, cls=DjangoJSONEncoder)),
    }
    deliveries = WebhookDelivery.objects.bulk_create(
        WebhookDelivery(
            endpoint=endpoint, message_id=_message_id(), event_type=event_type, payload=payload, next_attempt_at=now
        )
        for endpoint in endpoints
    )
    _queue_on_commit([d.pk for d in deliveries])
    return deliveries


def webhook_emit(
    *, branch: Branch, event_type: str, data: dict, endpoints: list[WebhookEndpoint] | None = None
) -> list[WebhookDelivery]:
    """Record ``event_type`` for each active endpoint of ``branch`` that subscribes to it, in the caller's
    transaction, and queue the sending once it commits. ``endpoints``: the branch's active endpoints,
    if the caller has them (an API call does), else they are read."""
    if branch.status != Branch.Status.ACTIVE:
        return []
    if endpoints is None:
        endpoints = list(WebhookEndpoint.objects.filter(_subscribes(event_type), branch=branch, is_active=True))
    else:
        endpoints = [e for e in endpoints if e.is_active and (not e.events or event_type in e.events)]
    if not endpoints:
        return []
    return _delivery_create(endpoints, event_type, data)


def webhook_test(*, endpoint: WebhookEndpoint) -> WebhookDelivery:
    """Send a ``ping`` to ``endpoint`` (whatever its event filter)."""
    if not endpoint.is_active:
        raise EndpointDisabled()
    return _delivery_create([endpoint], PING, {"endpoint_id": endpoint.pk})[0]


def webhook_replay(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send ``delivery`` again now, with the same ``webhook-id`` and body; the retry schedule restarts."""
    if not WebhookEndpoint.objects.filter(pk=delivery.endpoint_id, is_active=True).exists():
        raise EndpointDisabled()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=WebhookDelivery.Status.PENDING, attempts=0, next_attempt_at=timezone.now(), delivered_at=None
    )
    _queue_on_commit([delivery.pk])
    delivery.refresh_from_db()
    return delivery


# --- Event helpers (the call sites) ---------------------------------------------------------------


def _on_site_a() -> bool:
    """Site A's catalog and orders live in the public schema; the same code running for a branch's
    own shop (its schema) has nothing to announce."""
    return connection.schema_name == settings.PUBLIC_SCHEMA_NAME


def _ids(values: Iterable[int]) -> set[int]:
    return {int(v) for v in values}


def _subscribed_terms(event_type: str) -> list[BranchTerms]:
    branches = WebhookEndpoint.objects.filter(
        _subscribes(event_type), is_active=True, branch__status=Branch.Status.ACTIVE
    ).values("branch_id")
    return list(BranchTerms.objects.filter(branch_id__in=branches).select_related("branch").order_by("branch_id"))


def _selected_products(terms: BranchTerms, product_ids: set[int]) -> set[int]:
    """Products of ``product_ids`` the branch's selection covers, for sale or not: mirrors
    ``services.visible_products`` without its is_active filters, so a withdrawal is announced too."""
    products = Product.objects.filter(pk__in=product_ids)
    if not terms.show_everything:
        condition = Q(pk__in=terms.visible_products.values("pk"))
        for path in terms.visible_categories.values_list("path", flat=True):
            condition |= Q(category__path__startswith=path)
        products = products.filter(condition)
    return set(products.values_list("pk", flat=True))


def webhook_emit_product_updated(product_ids: Iterable[int]) -> int:
    """``product.updated`` to every branch whose selection covers any of ``product_ids`` (Site A's
    products: data edited, deactivated or moved). Returns the number of deliveries created."""
    ids = _ids(product_ids)
    if not ids or not _on_site_a():
        return 0
    created = 0
    for terms in _subscribed_terms(PRODUCT_UPDATED):
        seen = sorted(_selected_products(terms, ids))
        if seen:
            created += len(webhook_emit(branch=terms.branch, event_type=PRODUCT_UPDATED, data={"product_ids": seen}))
    return created


def _visible_variants(terms: BranchTerms, variant_products: dict[int, int]) -> tuple[list[int], list[int]]:
    visible = set(visible_products(terms).filter(pk__in=set(variant_products.values())).values_list("pk", flat=True))
    return sorted(visible), sorted(v for v, p in variant_products.items() if p in visible)


def webhook_emit_stock_changed(variant_ids: Iterable[int]) -> int:
    """``stock.changed`` to every branch that can see a product of ``variant_ids`` (codes imported,
    sold, released or written off on Site A)."""
    ids = _ids(variant_ids)
    if not ids or not _on_site_a():
        return 0
    variant_products = dict(Variant.objects.filter(pk__in=ids).values_list("pk", "product_id"))
    created = 0
    for terms in _subscribed_terms(STOCK_CHANGED):
        products, variants = _visible_variants(terms, variant_products)
        if variants:
            data = {"product_ids": products, "variant_ids": variants}
            created += len(webhook_emit(branch=terms.branch, event_type=STOCK_CHANGED, data=data))
    return created


def webhook_emit_price_changed(
    *, variant_ids: Iterable[int] = (), product_ids: Iterable[int] = (), price_list_id: int | None = None
) -> int:
    """``price.changed``: list prices or tiers of ``variant_ids`` / ``product_ids`` changed (to the
    branches that see them), or the rules of price list ``price_list_id`` changed (to every branch
    whose cost it sets, with ``full: true``)."""
    if not _on_site_a():
        return 0
    variant_products = dict(
        Variant.objects.filter(Q(pk__in=_ids(variant_ids)) | Q(product_id__in=_ids(product_ids))).values_list(
            "pk", "product_id"
        )
    )
    created = 0
    for terms in _subscribed_terms(PRICE_CHANGED):
        if price_list_id is not None and terms.price_list_id == price_list_id:
            data = {"product_ids": [], "variant_ids": [], "full": True}
        else:
            products, variants = _visible_variants(terms, variant_products) if variant_products else ([], [])
            if not variants:
                continue
            data = {"product_ids": products, "variant_ids": variants, "full": False}
        created += len(webhook_emit(branch=terms.branch, event_type=PRICE_CHANGED, data=data))
    return created


def webhook_emit_order_status_changed(
    *, purchase: BranchPurchase, endpoints: list[WebhookEndpoint] | None = None
) -> list[WebhookDelivery]:
    """``order.status_changed`` for the Site A order of a branch's purchase through the API."""
    if not _on_site_a():
        return []
    data = {"reference": purchase.reference, "number": purchase.order.number, "status": purchase.order.status}
    return webhook_emit(branch=purchase.branch, event_type=ORDER_STATUS_CHANGED, data=data, endpoints=endpoints)


def webhook_emit_balance_low(
    *,
    branch: Branch,
    threshold: Decimal,
    spent: Decimal,
    account: Account | None = None,
    endpoints: list[WebhookEndpoint] | None = None,
) -> list[WebhookDelivery]:
    """``balance.low`` when spending ``spent`` just took the branch balance from at or above
    ``threshold`` to below it: once per crossing (call after the debit, in its transaction, where the
    ledger holds the account's lock). ``account``: the balance account as the debit left it, if the
    caller has it (read again otherwise)."""
    if account is None:
        account = Account.objects.filter(code=balance_account_code(branch.pk)).first()
    if account is None:
        return []
    after = account.natural_balance
    if not (after < threshold <= after + spent):
        return []
    data = {"currency": account.currency, "balance": str(after), "low_balance_threshold": str(threshold)}
    if branch.owner_email:
        # The owner hears about it too, whether or not the branch listens to webhooks.
        transaction.on_commit(lambda: _balance_low_mail(branch.pk, data))
    return webhook_emit(branch=branch, event_type=BALANCE_LOW, data=data, endpoints=endpoints)


def _balance_low_mail(branch_id: int, data: dict) -> None:
    from notifications.services import email_send

    branch = Branch.objects.get(pk=branch_id)
    email_send(
        key="balance_low",
        to=branch.owner_email,
        context={"branch": branch, **data},
        reference=f"balance-low:{branch.slug}",
    )


# --- Delivering -----------------------------------------------------------------------------------


def _timeout() -> float:
    return float(getattr(settings, "WEBHOOK_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_SECONDS))


def retry_delay(attempts: int) -> timedelta | None:
    """How long after failed attempt number ``attempts`` (1-based) to try again; None: give up."""
    if attempts > len(RETRY_DELAYS):
        return None
    factor = random.uniform(1 - RETRY_JITTER, 1 + RETRY_JITTER)  # noqa: S311 — jitter, not a secret
    return RETRY_DELAYS[attempts - 1] * factor


@dataclass(frozen=True)
class _Outcome:
    status_code: int | None
    error: str

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _post(delivery: WebhookDelivery) -> _Outcome:
    endpoint = delivery.endpoint
    body = json.dumps(delivery.payload, separators=(",", ":"))
    sent_at = timezone.now()
    headers = {
        "webhook-id": delivery.message_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": Webhook(endpoint_secret(endpoint)).sign(delivery.message_id, sent_at, body),
        "content-type": "application/json",
        "user-agent": f"{settings.PLATFORM_NAME}-Webhooks/1",
    }
    url = httpx.URL(endpoint.url)
    try:
        address = _addresses(url)[0]
    except WebhookUrlRefused as exc:
        return _Outcome(None, exc.message)
    # Connect to the address that passed the check (no second DNS lookup to re-point), while the
    # Host header and TLS name stay the endpoint's.
    headers["host"] = url.netloc.decode("ascii")
    extensions = {"sni_hostname": url.raw_host.decode("ascii")} if url.scheme == "https" else None
    timeout = _timeout()
    try:
        with (
            httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client,
            client.stream(
                "POST", url.copy_with(host=str(address)), content=body.encode(), headers=headers, extensions=extensions
            ) as response,
        ):
            # The answer's body is never read: only the status matters.
            code = response.status_code
            return _Outcome(code, "" if 200 <= code < 300 else f"HTTP {code}")
    except httpx.TimeoutException:
        return _Outcome(None, f"No answer within {timeout:g} s.")
    except httpx.HTTPError as exc:
        return _Outcome(None, f"{type(exc).__name__}: {exc}"[:255])


def webhook_deliver(*, delivery_id: int) -> WebhookDelivery | None:
    """Make one attempt at a due delivery and record the outcome. Returns None when there was nothing to
    do (not due, finished, claimed by another worker, endpoint disabled or deleted) — safe to run twice.

    The attempt is claimed by moving ``next_attempt_at`` past the request's timeout, without holding a
    lock during the request; a worker that dies mid-attempt leaves the delivery for the sweeper.
    """
    now = timezone.now()
    lease = timedelta(seconds=_timeout() + 60)
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_id, status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now, endpoint__is_active=True
    ).update(attempts=F("attempts") + 1, next_attempt_at=now + lease)
    if not claimed:
        return None
    delivery = WebhookDelivery.objects.select_related("endpoint__branch").filter(pk=delivery_id).first()
    if delivery is None:
        return None
    try:
        outcome = _post(delivery)
    except Exception as exc:  # e.g. an undecryptable secret: count the attempt so the schedule still ends
        logger.exception("webhook delivery %s could not be sent", delivery_id)
        outcome = _Outcome(None, f"Not sent: {type(exc).__name__}.")
    disabled_reason = _outcome_record(delivery, outcome)
    if disabled_reason:
        _owner_alert(delivery.endpoint, disabled_reason)
    delivery.refresh_from_db()
    return delivery


def _outcome_record(delivery: WebhookDelivery, outcome: _Outcome) -> str:
    """Store the attempt's result; returns the reason when it disabled the endpoint, else ""."""
    now = timezone.now()
    S = WebhookDelivery.Status
    result = {"last_status_code": outcome.status_code, "last_error": outcome.error[:255]}
    with transaction.atomic():
        if outcome.succeeded:
            WebhookDelivery.objects.filter(pk=delivery.pk).update(
                status=S.SUCCEEDED, delivered_at=now, next_attempt_at=None, **result
            )
            WebhookEndpoint.objects.filter(pk=delivery.endpoint_id).update(consecutive_failures=0, failing_since=None)
            return ""
        endpoint = WebhookEndpoint.objects.select_for_update().filter(pk=delivery.endpoint_id).first()
        if endpoint is None:  # deleted while the request was in flight (its deliveries went with it)
            return ""
        endpoint.consecutive_failures += 1
        endpoint.failing_since = endpoint.failing_since or now
        endpoint.save(update_fields=["consecutive_failures", "failing_since"])
        reason = ""
        if outcome.status_code == 410:
            reason = "The endpoint answered 410 Gone."
        elif now - endpoint.failing_since >= AUTO_DISABLE_AFTER:
            reason = (
                f"Every delivery failed for {AUTO_DISABLE_AFTER.days} days "
                f"(since {endpoint.failing_since:%Y-%m-%d %H:%M} UTC; last error: {outcome.error})."
            )[:255]
        delay = None if reason else retry_delay(delivery.attempts)
        if reason:
            status, next_attempt_at = S.FAILED, None
        elif delay is None:
            status, next_attempt_at = S.GAVE_UP, None
        else:
            status, next_attempt_at = S.PENDING, now + delay
        WebhookDelivery.objects.filter(pk=delivery.pk).update(status=status, next_attempt_at=next_attempt_at, **result)
        if reason and webhook_endpoint_disable(endpoint=endpoint, reason=reason):
            return reason
    return ""


def _owner_alert(endpoint: WebhookEndpoint, reason: str) -> None:
    """E-mail the branch owner that Site A stopped sending to ``endpoint`` (outside any transaction)."""
    from notifications.services import email_send

    branch = endpoint.branch
    if not branch.owner_email:
        logger.warning("webhook endpoint %s of %s disabled; the branch has no owner e-mail", endpoint.pk, branch.slug)
        return
    context = {
        "branch_name": branch.name,
        "url": endpoint.url,
        "reason": reason,
        "platform_name": settings.PLATFORM_NAME,
    }
    if not email_send(
        key="webhook_disabled", to=branch.owner_email, context=context, reference=f"webhook:{endpoint.pk}"
    ):
        logger.warning("could not e-mail %s about webhook endpoint %s", branch.owner_email, endpoint.pk)


def webhook_deliveries_due(*, limit: int = 1000) -> list[int]:
    """Pending deliveries past due by more than ``SWEEP_GRACE``: retries beyond ``ETA_HORIZON``, and
    attempts whose task was lost (broker outage at commit, a crashed worker)."""
    cutoff = timezone.now() - SWEEP_GRACE
    return list(
        WebhookDelivery.objects.filter(
            status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=cutoff, endpoint__is_active=True
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )


def webhook_deliveries_prune(*, batch: int = 5000) -> int:
    """Forget finished deliveries older than ``KEEP_FINISHED_FOR`` (a batch per call)."""
    cutoff = timezone.now() - KEEP_FINISHED_FOR
    old = (
        WebhookDelivery.objects.filter(created__lt=cutoff)
        .exclude(status=WebhookDelivery.Status.PENDING)
        .values_list("pk", flat=True)[:batch]
    )
    return WebhookDelivery.objects.filter(pk__in=list(old)).delete()[0]


# --- Reading (for the API) ------------------------------------------------------------------------


def webhook_endpoint_get(branch: Branch, endpoint_id: str | int) -> WebhookEndpoint:
    """``branch``'s endpoint ``endpoint_id``; another branch's (or none) is "not found"."""
    endpoint = WebhookEndpoint.objects.filter(branch=branch, pk=_id_or_none(endpoint_id)).first()
    if endpoint is None:
        raise errors.NotFound("No webhook endpoint with this id.")
    return endpoint


def webhook_delivery_get(branch: Branch, delivery_id: str | int) -> WebhookDelivery:
    delivery = (
        WebhookDelivery.objects.select_related("endpoint")
        .filter(endpoint__branch=branch, pk=_id_or_none(delivery_id))
        .first()
    )
    if delivery is None:
        raise errors.NotFound("No webhook delivery with this id.")
    return delivery


def _id_or_none(value: str | int) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def endpoint_payload(endpoint: WebhookEndpoint) -> dict:
    return {
        "id": endpoint.pk,
        "url": endpoint.url,
        "description": endpoint.description,
        "events": endpoint.events,
        "is_active": endpoint.is_active,
        "disabled_at": endpoint.disabled_at.isoformat() if endpoint.disabled_at else None,
        "disabled_reason": endpoint.disabled_reason,
        "created": endpoint.created.isoformat(),
    }


def delivery_payload(delivery: WebhookDelivery) -> dict:
    return {
        "id": delivery.pk,
        "endpoint_id": delivery.endpoint_id,
        "webhook_id": delivery.message_id,
        "type": delivery.event_type,
        "payload": delivery.payload,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": delivery.next_attempt_at.isoformat() if delivery.next_attempt_at else None,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "created": delivery.created.isoformat(),
        "delivered_at": delivery.delivered_at.isoformat() if delivery.delivered_at else None,
    }


def endpoints_list(branch: Branch) -> list[dict]:
    return [endpoint_payload(e) for e in WebhookEndpoint.objects.filter(branch=branch).order_by("pk")]


def deliveries_page(endpoint: WebhookEndpoint, *, page: int, status: str = "", page_size: int = 50) -> dict:
    """Newest first; ``status`` filters (pending, succeeded, failed, gave_up)."""
    deliveries = WebhookDelivery.objects.filter(endpoint=endpoint).order_by("-created", "-pk")
    if status:
        if status not in WebhookDelivery.Status.values:
            raise errors.Invalid("Unknown status.", field="status")
        deliveries = deliveries.filter(status=status)
    start = (page - 1) * page_size
    rows = list(deliveries[start : start + page_size + 1])
    return {
        "results": [delivery_payload(d) for d in rows[:page_size]],
        "next_page": page + 1 if len(rows) > page_size else None,
    }


# --- Coalescing stock events --------------------------------------------------------------------
# Every sale moves stock. Instead of one event per sale per branch, changed variant ids gather in
# a Redis set and a task sends them together a few seconds later (branches then pull /changes).
STOCK_DEBOUNCE_SECONDS = 3


def _stock_keys() -> tuple[str, str]:
    from core.redis import platform_key

    return platform_key("stock-changed", "pending"), platform_key("stock-changed", "scheduled")


def stock_changed_soon(variant_ids: Iterable[int]) -> None:
    """Note that stock of ``variant_ids`` moved (any schema; only Site A's stock is announced)."""
    ids = _ids(variant_ids)
    if not ids or not _on_site_a():
        return
    from core.redis import get_redis

    def schedule() -> None:
        pending, scheduled = _stock_keys()
        with get_redis().pipeline(transaction=False) as pipe:  # one round trip
            pipe.sadd(pending, *ids)
            pipe.set(scheduled, "1", nx=True, ex=STOCK_DEBOUNCE_SECONDS * 10)
            _, first = pipe.execute()
        if first:
            from branch_api.provider.tasks import stock_changed_flush_task

            stock_changed_flush_task.apply_async(countdown=STOCK_DEBOUNCE_SECONDS)

    try:
        transaction.on_commit(schedule)
    except Exception:  # the stock change itself must never fail because Redis or the broker did
        logger.warning("could not schedule stock.changed", exc_info=True)


def stock_changed_flush() -> int:
    """Send the gathered stock changes; re-arm if more arrived meanwhile."""
    from core.redis import get_redis

    pending, scheduled = _stock_keys()
    client = get_redis()
    with client.pipeline() as pipe:
        pipe.smembers(pending)
        pipe.delete(pending)
        members, _ = pipe.execute()
    client.delete(scheduled)
    sent = webhook_emit_stock_changed(int(m) for m in members) if members else 0
    if client.scard(pending):
        stock_changed_soon(int(m) for m in client.smembers(pending))
    return sent
