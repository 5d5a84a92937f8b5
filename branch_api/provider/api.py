"""`/api/branch/v1/`: thin DRF views over branch_api.provider.services."""

from __future__ import annotations

import hashlib
import time
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.http import JsonResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import APIException, ParseError, Throttled, ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle
from rest_framework.utils.encoders import JSONEncoder
from rest_framework.views import APIView

from branch_api import signing
from branch_api.provider import errors, selectors, services, webhooks
from branch_api.provider.models import ApiAuditLog, IdempotencyRecord
from core.http import client_ip_from, storable_text

SIGNING_DOC = """Every request is signed: see docs/branch-api.md. Headers `X-Cardmesh-Key` (`prefix.secret`),
`X-Cardmesh-Timestamp` (Unix seconds, ±300 s), `X-Cardmesh-Nonce` (≥128 random bits, URL-safe base64, never
reused) and `X-Cardmesh-Signature` = hex HMAC-SHA256(signing secret, canonical), where canonical is
`METHOD\\nPATH\\nSORTED_QUERY\\nTIMESTAMP\\nNONCE\\nsha256hex(body)`. POSTs also need `Idempotency-Key`.

Worked example (Python): `branch_api.signing.sign_request(api_key=..., signing_secret=..., method="GET",
path="/api/branch/v1/products", query=[("page", "1")])` returns the four headers."""

SIGNED_HEADERS = [
    OpenApiParameter(
        signing.HEADER_KEY, OpenApiTypes.STR, OpenApiParameter.HEADER, required=True, description="`<prefix>.<secret>`"
    ),
    OpenApiParameter(signing.HEADER_TIMESTAMP, OpenApiTypes.INT, OpenApiParameter.HEADER, required=True),
    OpenApiParameter(signing.HEADER_NONCE, OpenApiTypes.STR, OpenApiParameter.HEADER, required=True),
    OpenApiParameter(signing.HEADER_SIGNATURE, OpenApiTypes.STR, OpenApiParameter.HEADER, required=True),
]
IDEMPOTENCY_HEADER = OpenApiParameter("Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER, required=True)


class _Replay(APIException):
    """Carries a stored idempotent response back through DRF's exception path."""

    def __init__(self, status: int, body: dict):
        super().__init__()
        self.replay_status, self.replay_body = status, body


class BranchThrottle(BaseThrottle):
    """Fixed one-minute window per branch, sized by its terms; the call was counted (in Redis, per
    branch) while the request was authenticated."""

    def allow_request(self, request, view) -> bool:
        caller = getattr(request, "caller", None)
        if caller is None:
            return True
        self._wait = 60 - time.time() % 60
        return caller.calls_this_minute <= caller.terms.rate_per_minute

    def wait(self):
        return self._wait


class _SortedKeysEncoder(JSONEncoder):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{**kwargs, "sort_keys": True})


class BranchJSONRenderer(JSONRenderer):
    """JSON with sorted keys: a replayed answer comes back from a jsonb column, which keeps no key
    order, and must still be the original answer byte for byte."""

    encoder_class = _SortedKeysEncoder


class BranchApiView(APIView):
    """Every call is one database transaction: what the endpoint changes, the stored answer of an
    idempotent POST and the audit row commit together (or, on a crash, not at all)."""

    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes = [BranchThrottle]
    renderer_classes = [BranchJSONRenderer]
    # False for an endpoint that may call a remote service: no transaction is held open across it.
    one_transaction = True

    def dispatch(self, request, *args, **kwargs):
        self._claimed = self._replayed = False
        # Rows the call adds to its audit row's statement (e.g. the log of the codes it revealed).
        self.rows_to_write: list = []
        try:
            if not self.one_transaction:
                return super().dispatch(request, *args, **kwargs)
            with transaction.atomic():
                return super().dispatch(request, *args, **kwargs)
        except Exception:
            self._claim_release(request)
            raise

    def initial(self, request, *args, **kwargs):
        raw = request._request
        self._started = time.perf_counter()
        self._body = raw.body
        if "\x00" in raw.path or any("\x00" in k or "\x00" in v for k, vs in raw.GET.lists() for v in vs):
            # No text column can hold it: refused here, not as a database error later.
            raise errors.Invalid("The path or query contains a NUL character.")
        self._idempotency_key = ""
        idempotency = None
        if raw.method == "POST":
            self._idempotency_key = raw.headers.get("Idempotency-Key", "")
            self._fingerprint = hashlib.sha256(f"{raw.method}\n{raw.path}\n".encode() + self._body).hexdigest()
            if _idempotency_key_valid(self._idempotency_key):
                idempotency = (self._idempotency_key, self._fingerprint)
        query = [(k, v) for k, values in raw.GET.lists() for v in values]
        request.caller = services.request_authenticate(
            method=raw.method,
            path=raw.path,
            query=query,
            body=self._body,
            headers=raw.headers,
            client_ip=client_ip_from(raw.META),
            idempotency=idempotency,
        )
        super().initial(request, *args, **kwargs)
        if raw.method == "POST":
            services.idempotency_key_check(self._idempotency_key)
            caller = request.caller
            if not caller.idempotency_claimed or caller.idempotency_answered:
                stored = services.idempotency_replay(
                    caller=caller, key=self._idempotency_key, fingerprint=self._fingerprint
                )
                raise _Replay(stored.response_status, stored.response_body)
            self._claimed = True

    def handle_exception(self, exc):
        if isinstance(exc, _Replay):
            response = Response(exc.replay_body, status=exc.replay_status)
            response["Idempotent-Replayed"] = "true"
            self._replayed = True
            return response
        if isinstance(exc, errors.ApiError):
            return Response(exc.as_dict(), status=exc.status)
        if isinstance(exc, Throttled):
            return Response(
                {"code": "throttled", "message": "Too many requests.", "fields": []},
                status=429,
                headers={"Retry-After": str(int(exc.wait or 60))},
            )
        if isinstance(exc, ValidationError):
            fields = list(exc.detail) if isinstance(exc.detail, dict) else []
            return Response({"code": "invalid", "message": str(exc.detail), "fields": fields}, status=400)
        if isinstance(exc, ParseError):
            return Response({"code": "invalid", "message": "The body is not valid JSON.", "fields": []}, status=400)
        if isinstance(exc, APIException):  # e.g. 405 method_not_allowed, 415 unsupported_media_type
            code = exc.get_codes() if isinstance(exc.get_codes(), str) else exc.default_code
            return Response({"code": code, "message": str(exc.detail), "fields": []}, status=exc.status_code)
        return super().handle_exception(exc)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        caller = getattr(request, "caller", None)
        answer = None
        if self._claimed and response.status_code < 500:
            answer = IdempotencyRecord(
                branch=caller.branch,
                key=self._idempotency_key,
                fingerprint=self._fingerprint,
                state=IdempotencyRecord.State.DONE,
                response_status=response.status_code,
                response_body=response.data,
            )
        else:
            self._claim_release(request)
        raw = request._request
        audit = ApiAuditLog(
            branch=caller.branch if caller else None,
            key_prefix=storable_text(raw.headers.get(signing.HEADER_KEY, "").partition(".")[0][:16]),
            ip=client_ip_from(raw.META),
            method=storable_text(raw.method[:8]),
            path=storable_text(raw.path[:255]),
            idempotency_key=storable_text(raw.headers.get("Idempotency-Key", "")[:128]),
            status_code=response.status_code,
            error_code=(response.data or {}).get("code", "")[:48]
            if response.status_code >= 400 and isinstance(response.data, dict)
            else "",
            latency_ms=round((time.perf_counter() - getattr(self, "_started", time.perf_counter())) * 1000, 2),
            request_sha256=hashlib.sha256(getattr(self, "_body", b"") or b"").hexdigest(),
        )
        services.call_record(audit=audit, answer=answer, rows=self.rows_to_write)
        return response

    def _claim_release(self, request) -> None:
        """A claim this request made but will not answer under (refused before it ran, or crashed) is
        given back at once, so a retry can run."""
        caller = getattr(request, "caller", None)
        if caller is not None and caller.idempotency_claimed:
            services.idempotency_release(branch=caller.branch, key=self._idempotency_key)


def endpoint_not_found(request, *args, **kwargs):
    """Any other path under the API: the API's JSON error, not the storefront's HTML page."""
    error = errors.NotFound("No such endpoint.")
    return JsonResponse(error.as_dict(), status=error.status)


def _idempotency_key_valid(key: str) -> bool:
    try:
        services.idempotency_key_check(key)
    except errors.IdempotencyKeyRequired:
        return False
    return True


class Ping(BranchApiView):
    @extend_schema(
        tags=["branch"],
        description=SIGNING_DOC,
        parameters=SIGNED_HEADERS,
        responses=inline_serializer(
            "Ping",
            {
                "protocol": serializers.CharField(),
                "server_time": serializers.DateTimeField(),
                "capabilities": serializers.ListField(),
                "branch": serializers.CharField(),
            },
        ),
    )
    def get(self, request):
        return Response(
            {
                "protocol": signing.PROTOCOL_VERSION,
                "server_time": timezone.now().isoformat(),
                "capabilities": ["catalog", "changes", "orders", "balance", "statement", "webhooks"],
                "branch": request.caller.branch.slug,
            }
        )


class Categories(BranchApiView):
    @extend_schema(tags=["branch"], parameters=SIGNED_HEADERS, responses=OpenApiTypes.OBJECT)
    def get(self, request):
        return Response({"results": selectors.categories_payload(request.caller.terms)})


class Products(BranchApiView):
    @extend_schema(
        tags=["branch"],
        responses=OpenApiTypes.OBJECT,
        parameters=[
            *SIGNED_HEADERS,
            OpenApiParameter("page", OpenApiTypes.INT),
            OpenApiParameter("page_size", OpenApiTypes.INT),
        ],
    )
    def get(self, request):
        page = _int(request.query_params.get("page"), 1, "page")
        size = min(_int(request.query_params.get("page_size"), 100, "page_size"), 500)
        return Response(selectors.products_page(request.caller.terms, page=page, page_size=size))


class Changes(BranchApiView):
    @extend_schema(
        tags=["branch"],
        responses=OpenApiTypes.OBJECT,
        parameters=[*SIGNED_HEADERS, OpenApiParameter("since", OpenApiTypes.STR)],
    )
    def get(self, request):
        return Response(selectors.changes_since(request.caller.terms, request.query_params.get("since", "")))


class OrderItemIn(serializers.Serializer):
    variant_id = serializers.IntegerField(min_value=1)
    quantity = serializers.IntegerField(min_value=1, max_value=1000)


class OrderIn(serializers.Serializer):
    reference = serializers.CharField(max_length=128)
    items = OrderItemIn(many=True, allow_empty=False)
    expected_total = serializers.DecimalField(max_digits=18, decimal_places=2, required=False, allow_null=True)


class Orders(BranchApiView):
    @extend_schema(
        tags=["branch"],
        parameters=[*SIGNED_HEADERS, OpenApiParameter("page", OpenApiTypes.INT)],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request):
        page = _int(request.query_params.get("page"), 1, "page")
        return Response(selectors.orders_page(request.caller.branch, page=page))

    @extend_schema(
        tags=["branch"],
        parameters=[*SIGNED_HEADERS, IDEMPOTENCY_HEADER],
        request=OrderIn,
        responses={201: OpenApiTypes.OBJECT, 200: OpenApiTypes.OBJECT},
        examples=[
            OpenApiExample(
                "Buy two codes",
                request_only=True,
                value={
                    "reference": "alpha-line-1842",
                    "items": [{"variant_id": 40, "quantity": 2}],
                    "expected_total": "19.00",
                },
            )
        ],
    )
    def post(self, request):
        data = OrderIn(data=request.data)
        data.is_valid(raise_exception=True)
        purchase, created = services.branch_purchase(
            caller=request.caller,
            reference=data.validated_data["reference"],
            items=[services.PurchaseItem(**item) for item in data.validated_data["items"]],
            expected_total=data.validated_data.get("expected_total"),
        )
        body = {
            "order": selectors.order_payload(purchase, with_codes=True, request=request, reveal_log=self.rows_to_write)
        }
        return Response(body, status=201 if created else 200)


class OrderDetail(BranchApiView):
    @extend_schema(tags=["branch"], parameters=SIGNED_HEADERS, responses=OpenApiTypes.OBJECT)
    def get(self, request, reference: str):
        purchase = selectors.purchase_get(request.caller.branch, reference)
        payload = selectors.order_payload(purchase, with_codes=True, request=request, reveal_log=self.rows_to_write)
        return Response({"order": payload})


class Balance(BranchApiView):
    @extend_schema(tags=["branch"], parameters=SIGNED_HEADERS, responses=OpenApiTypes.OBJECT)
    def get(self, request):
        account = services.branch_balance_account(request.caller.branch)
        return Response(
            {
                "currency": account.currency,
                "balance": str(account.natural_balance),
                "low_balance_threshold": str(request.caller.terms.low_balance_threshold),
                "mode": request.caller.terms.mode,
            }
        )


class Statement(BranchApiView):
    @extend_schema(
        tags=["branch"],
        responses=OpenApiTypes.OBJECT,
        parameters=[
            *SIGNED_HEADERS,
            OpenApiParameter("since", OpenApiTypes.DATE),
            OpenApiParameter("until", OpenApiTypes.DATE),
        ],
    )
    def get(self, request):
        return Response(
            {
                "results": selectors.statement(
                    request.caller.branch, request.query_params.get("since"), request.query_params.get("until")
                )
            }
        )


MAX_PAGE = 1_000_000  # far past any real catalog, and page x size stays inside a bigint OFFSET


def _int(value, default: int, name: str) -> int:
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except ValueError:
        raise errors.Invalid(f"{name} must be a positive integer.", field=name) from None
    if not 1 <= number <= MAX_PAGE:
        raise errors.Invalid(f"{name} must be an integer from 1 to {MAX_PAGE}.", field=name)
    return number


# --- Webhook endpoints (branch_api.provider.webhooks) ---------------------------------------------


class WebhookEndpointIn(serializers.Serializer):
    url = serializers.CharField(max_length=500)
    description = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=webhooks.EVENT_TYPES), required=False, default=list
    )


class WebhookEndpointChange(serializers.Serializer):
    url = serializers.CharField(max_length=500, required=False)
    description = serializers.CharField(max_length=200, required=False, allow_blank=True)
    events = serializers.ListField(child=serializers.ChoiceField(choices=webhooks.EVENT_TYPES), required=False)
    is_active = serializers.BooleanField(required=False)
    rotate_secret = serializers.BooleanField(required=False, default=False)


class WebhookEndpoints(BranchApiView):
    @extend_schema(
        tags=["branch"],
        parameters=SIGNED_HEADERS,
        responses=OpenApiTypes.OBJECT,
        operation_id="branch_v1_webhook_endpoints_list",
    )
    def get(self, request):
        return Response({"results": webhooks.endpoints_list(request.caller.branch)})

    @extend_schema(
        tags=["branch"],
        parameters=[*SIGNED_HEADERS, IDEMPOTENCY_HEADER],
        request=WebhookEndpointIn,
        responses={201: OpenApiTypes.OBJECT},
        description="Creates an endpoint. The answer carries its `whsec_` secret once.",
    )
    def post(self, request):
        data = WebhookEndpointIn(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint, secret = webhooks.webhook_endpoint_create(branch=request.caller.branch, **data.validated_data)
        return Response({"endpoint": webhooks.endpoint_payload(endpoint), "secret": secret}, status=201)

    def finalize_response(self, request, response, *args, **kwargs):
        # The secret is shown once: the idempotency record (kept for days) stores the answer without it,
        # so a replayed create answers "secret": null; PATCH {"rotate_secret": true} issues a new one.
        data = response.data if isinstance(getattr(response, "data", None), dict) else {}
        secret = data.get("secret") if response.status_code == 201 else None
        if secret:
            data["secret"] = None
        response = super().finalize_response(request, response, *args, **kwargs)
        if secret:
            data["secret"] = secret
        return response


class WebhookEndpointDetail(BranchApiView):
    @extend_schema(tags=["branch"], parameters=SIGNED_HEADERS, responses=OpenApiTypes.OBJECT)
    def get(self, request, endpoint_id: str):
        endpoint = webhooks.webhook_endpoint_get(request.caller.branch, endpoint_id)
        return Response({"endpoint": webhooks.endpoint_payload(endpoint)})

    @extend_schema(
        tags=["branch"],
        parameters=SIGNED_HEADERS,
        request=WebhookEndpointChange,
        responses=OpenApiTypes.OBJECT,
        description="`is_active: true` re-enables a disabled endpoint; `rotate_secret: true` answers a new secret.",
    )
    def patch(self, request, endpoint_id: str):
        endpoint = webhooks.webhook_endpoint_get(request.caller.branch, endpoint_id)
        data = WebhookEndpointChange(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint, secret = webhooks.webhook_endpoint_update(endpoint=endpoint, **data.validated_data)
        body = {"endpoint": webhooks.endpoint_payload(endpoint)}
        if secret:
            body["secret"] = secret
        return Response(body)

    @extend_schema(tags=["branch"], parameters=SIGNED_HEADERS, responses={204: None})
    def delete(self, request, endpoint_id: str):
        endpoint = webhooks.webhook_endpoint_get(request.caller.branch, endpoint_id)
        webhooks.webhook_endpoint_delete(endpoint=endpoint)
        return Response(status=204)


class WebhookEndpointTest(BranchApiView):
    @extend_schema(
        tags=["branch"],
        parameters=[*SIGNED_HEADERS, IDEMPOTENCY_HEADER],
        request=None,
        responses={202: OpenApiTypes.OBJECT},
        description="Queues a `ping` event to the endpoint; follow it in the endpoint's deliveries.",
    )
    def post(self, request, endpoint_id: str):
        endpoint = webhooks.webhook_endpoint_get(request.caller.branch, endpoint_id)
        delivery = webhooks.webhook_test(endpoint=endpoint)
        return Response({"delivery": webhooks.delivery_payload(delivery)}, status=202)


class WebhookEndpointDeliveries(BranchApiView):
    @extend_schema(
        tags=["branch"],
        responses=OpenApiTypes.OBJECT,
        parameters=[*SIGNED_HEADERS, OpenApiParameter("page", OpenApiTypes.INT), OpenApiParameter("status", str)],
    )
    def get(self, request, endpoint_id: str):
        endpoint = webhooks.webhook_endpoint_get(request.caller.branch, endpoint_id)
        page = _int(request.query_params.get("page"), 1, "page")
        return Response(webhooks.deliveries_page(endpoint, page=page, status=request.query_params.get("status", "")))


class WebhookDeliveryReplay(BranchApiView):
    @extend_schema(
        tags=["branch"],
        parameters=[*SIGNED_HEADERS, IDEMPOTENCY_HEADER],
        request=None,
        responses={202: OpenApiTypes.OBJECT},
        description="Sends the delivery again with the same `webhook-id`; its retry schedule restarts.",
    )
    def post(self, request, delivery_id: str):
        delivery = webhooks.webhook_delivery_get(request.caller.branch, delivery_id)
        delivery = webhooks.webhook_replay(delivery=delivery)
        return Response({"delivery": webhooks.delivery_payload(delivery)}, status=202)


class TopUpIn(serializers.Serializer):
    amount = serializers.DecimalField(max_digits=18, decimal_places=2, min_value=Decimal("0.01"))
    return_url = serializers.URLField(required=False, allow_blank=True, max_length=500)


class TopUps(BranchApiView):
    one_transaction = False  # starting the payment may create it at the gateway (e.g. a Stripe session)

    @extend_schema(
        tags=["branch"],
        parameters=[*SIGNED_HEADERS, IDEMPOTENCY_HEADER],
        request=TopUpIn,
        responses={201: OpenApiTypes.OBJECT},
        description="Start a balance top-up paid on Site A's payment page: send the branch owner's "
        "browser to `pay_url`; the balance is credited when the payment is confirmed.",
    )
    def post(self, request):
        data = TopUpIn(data=request.data)
        data.is_valid(raise_exception=True)
        top_up, path = services.top_up_start(
            branch=request.caller.branch,
            amount=data.validated_data["amount"],
            return_url=data.validated_data.get("return_url", ""),
        )
        from tenants.services import branch_url

        return Response(
            {
                "id": top_up.pk,
                "amount": str(top_up.amount),
                "currency": top_up.currency,
                "status": top_up.status,
                # The sandbox answers with a path on Site A; a real gateway with its own address.
                "pay_url": path
                if path.startswith(("https://", "http://"))
                else branch_url(settings.PLATFORM_DOMAIN, path),
            },
            status=201,
        )
