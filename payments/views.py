from django.conf import settings
from django.http import Http404, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from core.http import client_ip
from payments.errors import ProviderUnavailable
from payments.models import PaymentAttempt
from payments.providers import get_provider
from payments.providers.sandbox import SandboxProvider
from payments.services import payment_callback_handle


@csrf_exempt
@require_http_methods(["GET", "POST"])
def callback(request, provider: str):
    """Server-to-server notifications from a gateway. Signed by the gateway, so no CSRF token.

    POST, or GET for gateways that notify that way (epay: ``callback_via_get``). A ``callback_raw``
    provider (Stripe) verifies the raw body and headers, packed by its ``raw_callback_data``.
    """
    try:
        gateway = get_provider(provider)
    except ProviderUnavailable:
        raise Http404("unknown payment provider") from None
    body = request.body  # read before POST: a multipart body cannot be read once parsed
    if request.method == "GET":
        if not getattr(gateway, "callback_via_get", False):
            return HttpResponseNotAllowed(["POST"])
        data = request.GET.dict()
    elif getattr(gateway, "callback_raw", False):
        data = gateway.raw_callback_data(body=body, headers=request.headers)
    else:
        data = request.POST.dict() if request.POST else {}
    if not data and body:
        import json

        try:
            data = json.loads(body)
        except ValueError:
            data = {}
        if not isinstance(data, dict):  # a JSON array or scalar is no notification
            data = {}
    accepted, reason = payment_callback_handle(provider_code=provider, data=data, remote_ip=client_ip(request))
    # Some rejections must still be acknowledged so the gateway stops retrying (nothing was applied).
    accepted = accepted or reason in getattr(gateway, "acknowledged_reasons", ())
    return gateway.callback_response(accepted=accepted)


def sandbox_gateway(request, token: str):
    """The sandbox gateway's hosted page: shows what is being paid, with Pay and Decline buttons."""
    if not settings.PAYMENTS_SANDBOX_ENABLED:
        raise Http404("the sandbox gateway is disabled")
    attempt = get_object_or_404(PaymentAttempt.objects.select_related("order"), token=token, provider="sandbox")
    top_up = _top_up_of(attempt)
    if request.method == "POST":
        succeeded = request.POST.get("action") == "pay"
        notification = SandboxProvider().notification(attempt=attempt, succeeded=succeeded)
        # A real gateway calls our callback URL server-to-server; the sandbox does the same in-process.
        payment_callback_handle(provider_code="sandbox", data=notification, remote_ip=client_ip(request))
        # The order page says so when the customer comes back from a declined payment (it may be on
        # another domain, a branch whose sale Site A collects, so a session message would not reach it).
        declined = "" if succeeded else "?payment=declined"
        if attempt.return_url:  # e.g. a branch's order page, for a sale Site A collects
            return redirect(
                attempt.return_url + (declined.replace("?", "&") if "?" in attempt.return_url else declined)
            )
        if top_up is not None:
            return redirect(top_up.return_url or "sandbox-gateway", **({} if top_up.return_url else {"token": token}))
        return redirect(reverse("order-detail", kwargs={"number": attempt.order.number}) + declined)
    context = {"attempt": attempt, "order": attempt.order or _branch_sale_of(attempt), "top_up": top_up}
    return render(request, "payments/sandbox_gateway.html", context)


def _branch_sale_of(attempt: PaymentAttempt):
    """A branch's order that Site A collects, shown by its number (its lines live in the branch)."""
    if attempt.purpose != PaymentAttempt.Purpose.BRANCH_SALE:
        return None
    from types import SimpleNamespace

    from branch_api.provider.models import BranchSale

    number = BranchSale.objects.filter(pk=attempt.subject_id).values_list("order_number", flat=True).first()
    return SimpleNamespace(number=number) if number else None


def _top_up_of(attempt: PaymentAttempt):
    if attempt.purpose == PaymentAttempt.Purpose.WALLET_TOP_UP:
        # Shown like a branch top-up ("Top up the balance of …") and sent back to the wallet page.
        from types import SimpleNamespace

        from django.urls import reverse
        from django.utils.translation import gettext as _

        return SimpleNamespace(branch=SimpleNamespace(name=_("your wallet")), return_url=reverse("wallet"))
    if attempt.purpose != PaymentAttempt.Purpose.BRANCH_TOP_UP:
        return None
    from branch_api.provider.models import BalanceTopUp

    return BalanceTopUp.objects.select_related("branch").filter(pk=attempt.subject_id).first()
