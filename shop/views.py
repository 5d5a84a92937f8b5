"""Storefront pages. Thin: parse input, call one service or selector, render."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST
from django_ratelimit.core import is_ratelimited

from cardvault.models import CardReveal
from catalog.models import Category
from catalog.selectors import category_products, category_tree, featured_products, product_detail, product_search
from core.errors import DomainError
from core.http import client_ip
from ledger.services import shop_currency
from orders.models import Order
from orders.selectors import order_authorize_session, order_delivered_codes, order_viewer_may_see_codes
from orders.services import CartItem, order_check_lookup, order_place
from payments.selectors import checkout_channels
from payments.services import payment_check, payment_start
from payments.wallet import PROVIDER_CODE as WALLET
from payments.wallet import wallet_balance, wallet_movements, wallet_pay, wallet_top_up_start
from shop.forms import BuyForm, OrderLookupForm
from shop.selectors import product_buy_box


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _product_page(request, card, form: BuyForm, *, status: int = 200):
    data = form.data if form.is_bound else {}
    box = product_buy_box(card, variant_id=_int(data.get("variant")), quantity=_int(data.get("quantity")))
    context = {"card": card, "form": form, "box": box, "categories": category_tree()}
    return render(request, "shop/product.html", context, status=status)


def _buy_form(request, card, data=None) -> BuyForm:
    """The buy form, also offering the customer's wallet when it covers the cheapest purchase."""
    cheapest = card.from_price * card.product.min_quantity if card.from_price is not None else None
    # A channel is offered when it takes some purchase of this product; the exact total is checked
    # when the order is placed.
    prices = [v.quote.unit_price for v in card.variants]
    dearest = max(prices) * card.product.max_quantity if prices else None
    channels = checkout_channels(user=request.user, amount=cheapest, amount_up_to=dearest)
    return BuyForm(data, user=request.user, card=card, channels=channels)


def home(request):
    """The storefront home of the current schema (Site A's own shop or a branch)."""
    return render(request, "shop/home.html", {"categories": category_tree(), "products": featured_products()})


def category(request, slug: str):
    node = get_object_or_404(Category, slug=slug, is_active=True)
    products, page = category_products(node, page=request.GET.get("page"))
    context = {"category": node, "categories": category_tree(), "products": products, "page": page}
    return render(request, "shop/category.html", context)


def product(request, slug: str):
    card = product_detail(slug)
    if card is None:
        raise Http404("no such product")
    return _product_page(request, card, _buy_form(request, card))


@require_POST
def buy(request, slug: str):
    """Place the order (reserving codes) and send the customer to the payment page."""
    card = product_detail(slug)
    if card is None:
        raise Http404("no such product")
    form = _buy_form(request, card, request.POST)
    if form.is_valid():
        data = form.cleaned_data
        checkout_input = {
            spec["name"]: request.POST.get(f"input_{spec['name']}", "") for spec in card.product.checkout_fields or []
        }
        place = dict(
            items=[
                CartItem(
                    variant_id=data["variant"],
                    quantity=data["quantity"],
                    expected_unit_price=data["expected_price"],
                    checkout_input=checkout_input,
                )
            ],
            email=data["email"],
            lookup_password=data["lookup_password"],
            customer=request.user,
            client_ip=client_ip(request),
        )
        try:
            if data["payment"] == WALLET:
                with transaction.atomic():  # not enough in the wallet: no order is left behind either
                    order = wallet_pay(order=order_place(**place), user=request.user)
                order_authorize_session(request, order)
                return redirect("order-detail", number=order.number)
            with transaction.atomic():  # a channel that does not take this total: no order is left behind
                order = order_place(**place)
                payment_check(order=order, provider_code=data["payment"])
            order_authorize_session(request, order)
            _attempt, url = payment_start(order=order, provider_code=data["payment"], request=request)
            return redirect(url)
        except DomainError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
    return _product_page(request, card, form, status=400)


def _codes_text(delivered) -> str:
    """One code per line, ``code|secret`` when there is a secret: the TXT download and "Copy all"."""
    rows = []
    for item in delivered:
        rows.extend(f"{code}|{secret}" if secret else code for code, secret in item.codes)
    return "\n".join(rows)


# A partially refunded order keeps the codes the customer received; a wholly refunded one hides them.
CODES_SHOWN = (Order.Status.DELIVERED, Order.Status.PARTIALLY_REFUNDED)


def _order_context(request, order: Order) -> dict:
    can_see = order_viewer_may_see_codes(request, order)
    delivered = []
    if can_see and order.status in CODES_SHOWN:
        delivered = order_delivered_codes(
            order,
            channel=CardReveal.Channel.ORDER_PAGE,
            user=request.user,
            ip=client_ip(request),
            user_agent=request.META.get("HTTP_USER_AGENT", ""),
        )
    return {
        "order": order,
        "lines": order.lines.all(),
        "can_see_codes": can_see,
        "delivered": delivered,
        "codes_text": _codes_text(delivered),
        "events": order.events.all(),
        "pay_channels": (
            checkout_channels(user=request.user, amount=order.total)
            if can_see and order.status == Order.Status.PENDING_PAYMENT
            else []
        ),
        # Queried only for refunded orders: every other order page keeps its query count.
        "refunds": order.refunds.filter(status="succeeded").order_by("created")
        if order.status in (Order.Status.REFUNDED, Order.Status.PARTIALLY_REFUNDED)
        else [],
    }


@never_cache
def order_detail(request, number: str):
    order = get_object_or_404(Order, number=number.upper())
    return render(request, "shop/order.html", _order_context(request, order))


@never_cache
def order_status(request, number: str):
    """Polled by the order page until the order settles; never includes codes."""
    order = get_object_or_404(Order, number=number.upper())
    return JsonResponse({"status": order.status, "label": order.get_status_display(), "final": order.is_final})


@never_cache
def order_codes_txt(request, number: str):
    order = get_object_or_404(Order, number=number.upper())
    if not order_viewer_may_see_codes(request, order) or order.status not in CODES_SHOWN:
        raise Http404("no codes here")
    delivered = order_delivered_codes(
        order,
        channel=CardReveal.Channel.TXT_DOWNLOAD,
        user=request.user,
        ip=client_ip(request),
        user_agent=request.META.get("HTTP_USER_AGENT", ""),
    )
    response = HttpResponse(_codes_text(delivered) + "\n", content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="order-{order.number}.txt"'
    return response


def order_lookup(request):
    """Guest lookup: order number + e-mail + lookup password. Rate limited per IP and per order."""
    # Bound on every POST, even an empty one: a rate-limited POST adds its error to a bound form.
    form = OrderLookupForm(request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST":
        limited = is_ratelimited(
            request, group="order-lookup", key="ip", rate=settings.ORDER_LOOKUP_RATE, method="POST", increment=True
        )
        number = request.POST.get("number", "").strip().upper()[:32]
        limited = (
            is_ratelimited(
                request,
                group="order-lookup-number",
                key=lambda _g, _r: number,
                rate=settings.ORDER_LOOKUP_RATE,
                method="POST",
                increment=True,
            )
            or limited
        )
        if limited:
            form.add_error(None, _("Too many attempts. Please wait a minute and try again."))
            status = 429
        elif form.is_valid():
            data = form.cleaned_data
            order = Order.objects.filter(number=data["number"]).first()
            if order and order_check_lookup(order, email=data["email"], password=data["password"]):
                order_authorize_session(request, order)
                return redirect("order-detail", number=order.number)
            form.add_error(None, _("No order matches these details."))
            status = 400
        else:
            status = 400
    return render(request, "shop/order_lookup.html", {"form": form}, status=status)


@login_required
def my_orders(request):
    orders = Order.objects.filter(customer=request.user).prefetch_related("lines").order_by("-created")[:100]
    return render(request, "shop/my_orders.html", {"orders": orders})


@login_required
def wallet(request):
    """The customer's wallet: balance, movements and a top-up paid through the sandbox/gateway."""
    if request.method == "POST":
        try:
            # Paid through the shop's first payment channel (a wallet cannot top itself up).
            channels = [code for code, _label in checkout_channels(for_order=False) if code != "balance"]
            if not channels:
                messages.error(request, _("This shop cannot take payments at the moment."))
                return redirect("wallet")
            _attempt, url = wallet_top_up_start(
                user=request.user, amount=request.POST.get("amount", ""), provider_code=channels[0], request=request
            )
            return redirect(url)
        except DomainError as exc:
            messages.error(request, exc.message)
            return redirect("wallet")
    context = {
        "balance": wallet_balance(request.user),
        "currency": shop_currency(),
        "movements": wallet_movements(request.user),
    }
    return render(request, "shop/wallet.html", context)


def search(request):
    query = request.GET.get("q", "")
    results = product_search(query)
    if request.headers.get("Accept", "").startswith("application/json"):
        return JsonResponse(
            {"results": [{"name": p.name, "category": p.category.name, "url": f"/p/{p.slug}/"} for p in results]}
        )
    return render(request, "shop/search.html", {"query": query, "results": results, "categories": category_tree()})


@require_POST
def order_pay(request, number: str):
    """Back to payment for an unpaid order (the customer left the gateway, or it failed), with any
    channel the shop offers for its total, the wallet included. Only the browser or account that may
    see the order can pay it."""
    order = get_object_or_404(Order, number=number.upper())
    if not order_viewer_may_see_codes(request, order):
        raise Http404("no such order here")
    offered = dict(checkout_channels(user=request.user, amount=order.total))
    choice = request.POST.get("payment") or (
        order.payment_attempts.order_by("-created").values_list("provider", flat=True).first()
    )
    if choice not in offered:
        if request.POST.get("payment"):
            messages.error(request, _("That payment method is not available for this order."))
            return redirect("order-detail", number=order.number)
        choice = next(iter(offered), "")
    try:
        if choice == WALLET:
            wallet_pay(order=order, user=request.user)
            return redirect("order-detail", number=order.number)
        _attempt, url = payment_start(order=order, provider_code=choice, request=request)
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect("order-detail", number=order.number)
    return redirect(url)


@require_POST
def order_forget(request, number: str):
    """Remove an order from this browser's session (shared computers)."""
    allowed = [n for n in request.session.get("orders_authorized", []) if n != number]
    request.session["orders_authorized"] = allowed
    messages.info(request, _("This browser no longer shows the codes of that order."))
    return redirect("home")
