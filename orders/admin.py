"""Orders admin: the order list and history, the fulfilment queue and the fulfil page.

Orders change state only through ``orders.services``; this admin never edits an order's fields.
Domain errors from the services are shown as messages.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import Prefetch
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin, TabularInline
from unfold.decorators import action, display
from unfold.widgets import UnfoldAdminPasswordWidget, UnfoldAdminTextareaWidget, UnfoldAdminTextInputWidget

from core.admin_site import ReadOnlyAdminMixin
from core.errors import DomainError
from orders.models import Order, OrderEvent, OrderLine
from orders.services import REFUNDABLE, order_fulfil_manually, order_retry_delivery
from payments.manual import (
    CONFIRMABLE,
    MIN_REASON_LENGTH,
    confirmation_password_is_set,
    manual_confirmation_amount,
    payment_confirm_manually,
)
from payments.refunds_admin import RefundInline, refund_to_wallet_action, refund_to_wallet_view, refund_view

S = Order.Status
QUEUE = (S.MANUAL_FULFILMENT, S.AWAITING_STOCK, S.AWAITING_UPSTREAM)
STATUS_COLOURS = {
    S.PENDING_PAYMENT: "info",
    S.PAID: "info",
    S.DELIVERED: "success",
    S.AWAITING_STOCK: "danger",
    S.MANUAL_FULFILMENT: "warning",
    S.AWAITING_UPSTREAM: "warning",
    S.EXPIRED: "",
    S.CANCELLED: "",
    S.REFUNDED: "",
    S.PARTIALLY_REFUNDED: "warning",
}


def checkout_input_items(line: OrderLine) -> list[tuple[str, str]]:
    """(label, value) pairs of what the customer filled in, labelled as the product asks for them."""
    labels = {}
    product = getattr(line.variant, "product", None) if line.variant_id else None
    for spec in getattr(product, "checkout_fields", None) or []:
        if isinstance(spec, dict) and spec.get("name"):
            labels[spec["name"]] = spec.get("label") or spec["name"]
    return [(labels.get(name, name), str(value)) for name, value in (line.checkout_input or {}).items()]


class NeedsStaffFilter(admin.SimpleListFilter):
    title = _("queue")
    parameter_name = "queue"

    def lookups(self, request, model_admin):
        return [("staff", _("Waiting for staff (manual or out of stock)"))]

    def queryset(self, request, queryset):
        return queryset.filter(status__in=QUEUE) if self.value() == "staff" else queryset


class ReadOnlyInline(ReadOnlyAdminMixin, TabularInline):
    extra = 0
    can_delete = False


class OrderLineInline(ReadOnlyInline):
    model = OrderLine
    fields = [
        "product_name",
        "variant_name",
        "sku",
        "delivery_mode",
        "quantity",
        "delivered_quantity",
        "unit_price",
        "unit_cost",
        "price_rule",
        "customer_input",
        "fulfilment_note",
        "delivered_codes",
    ]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("assignments")

    @display(description=_("Delivered codes"))
    def delivered_codes(self, obj: OrderLine):
        """Which vault codes the customer received, and whether the order was refunded after that."""
        items = [
            (
                reverse("admin:cardvault_card_change", args=[a.card_id]),
                a.card_id,
                _(" — refunded after delivery %(when)s") % {"when": a.refunded_at.strftime("%Y-%m-%d %H:%M")}
                if a.refunded_at
                else "",
            )
            for a in sorted(obj.assignments.all(), key=lambda a: a.pk)
        ]
        return format_html_join(mark_safe("<br>"), '<a href="{}">#{}</a>{}', items) if items else "—"

    @display(description=_("Customer input"))
    def customer_input(self, obj: OrderLine):
        items = checkout_input_items(obj)
        return format_html_join(mark_safe("<br>"), "{}: {}", items) if items else "—"


class OrderEventInline(ReadOnlyInline):
    model = OrderEvent
    fields = ["created", "from_status", "to_status", "actor", "message"]
    readonly_fields = fields


class FulfilForm(forms.Form):
    codes = forms.CharField(
        label=_("Codes"),
        required=False,
        strip=False,
        widget=UnfoldAdminTextareaWidget(attrs={"rows": 6, "spellcheck": "false", "autocomplete": "off"}),
        help_text=_("One per line. They are stored encrypted and sent to the customer."),
    )
    note = forms.CharField(
        label=_("Note to the customer"),
        required=False,
        max_length=255,
        widget=UnfoldAdminTextInputWidget,
        help_text=_("What was done, e.g. 'Topped up account 12345 with 100 credits'."),
    )


class ConfirmPaymentForm(forms.Form):
    confirmation_password = forms.CharField(
        label=_("Confirmation password"),
        strip=False,
        widget=UnfoldAdminPasswordWidget(render_value=False, attrs={"autocomplete": "off"}),
    )
    reason = forms.CharField(
        label=_("Reason"),
        min_length=MIN_REASON_LENGTH,
        widget=UnfoldAdminTextareaWidget(attrs={"rows": 3}),
        help_text=_("Why the payment is confirmed by hand, e.g. 'Paid per gateway dashboard, callback lost'."),
    )
    gateway_reference = forms.CharField(
        label=_("Gateway reference"),
        required=False,
        max_length=128,
        widget=UnfoldAdminTextInputWidget,
        help_text=_("The gateway's trade number of the payment, as shown in its dashboard."),
    )


@admin.register(Order)
class OrderAdmin(ModelAdmin):
    list_display = ["number", "status_display", "email", "total_display", "created", "paid_at"]
    list_filter = [NeedsStaffFilter, "status", "created", "payment_provider"]
    search_fields = ["number", "email"]
    date_hierarchy = "created"
    fields = [
        "number",
        "status",
        "email",
        "customer",
        "currency",
        "total",
        "payment_provider",
        "client_ip",
        "created",
        "expires_at",
        "paid_at",
        "delivered_at",
        "delivery_email_sent_at",
    ]
    readonly_fields = fields
    inlines = [OrderLineInline, OrderEventInline, RefundInline]
    actions = ["retry_delivery", "refund_to_wallet"]
    actions_list = ["fulfilment_queue"]
    actions_detail = ["fulfil", "confirm_payment", "refund"]

    def has_add_permission(self, request):
        return False  # orders are placed by customers

    def has_delete_permission(self, request, obj=None):
        return False  # orders are the record of sales, codes and payments

    def has_change_permission(self, request, obj=None):
        # Model-level (bulk actions) only: an order's fields are never edited by hand.
        return obj is None and super().has_change_permission(request)

    def has_fulfil_permission(self, request, obj=None):
        return request.user.has_perm("orders.change_order")

    def get_actions_detail(self, request, object_id):
        actions = super().get_actions_detail(request, object_id)
        waiting = str(object_id).isdigit() and Order.objects.filter(pk=object_id, status__in=QUEUE).exists()
        if not waiting:
            actions = [a for a in actions if a.action_name != "orders_order_fulfil"]
        unpaid = (
            str(object_id).isdigit()
            and Order.objects.filter(pk=object_id, status__in=CONFIRMABLE, paid_at__isnull=True).exists()
        )
        if not unpaid:
            actions = [a for a in actions if a.action_name != "orders_order_confirm_payment"]
        refundable = (
            str(object_id).isdigit()
            and Order.objects.filter(pk=object_id, status__in=REFUNDABLE, paid_at__isnull=False).exists()
        )
        if not refundable:
            actions = [a for a in actions if a.action_name != "orders_order_refund"]
        return actions

    def get_urls(self):
        from django.urls import path

        wallet = path(
            "<path:object_id>/refund-to-wallet/",
            self.admin_site.admin_view(lambda request, object_id: refund_to_wallet_view(self, request, object_id)),
            name="orders_order_refund_to_wallet",
        )
        return [wallet, *super().get_urls()]

    @display(description=_("Status"), ordering="status", label=STATUS_COLOURS)
    def status_display(self, obj: Order):
        return obj.status, obj.get_status_display()

    @display(description=_("Total"), ordering="total")
    def total_display(self, obj: Order) -> str:
        return f"{obj.total} {obj.currency}"

    @action(description=_("Retry delivery (orders awaiting stock)"), permissions=["fulfil"])
    def retry_delivery(self, request, queryset):
        waiting = list(queryset.filter(status=S.AWAITING_STOCK).values_list("pk", "number"))
        skipped = queryset.count() - len(waiting)
        delivered = 0
        for order_id, number in waiting:
            try:
                order = order_retry_delivery(order_id=order_id, actor=request.user)
            except DomainError as exc:
                self.message_user(request, format_html("{}: {}", number, exc.message), messages.WARNING)
                continue
            if order.status == S.DELIVERED:
                delivered += 1
            else:
                self.message_user(
                    request, format_html("{}: {}", number, _("still not enough codes in stock")), messages.WARNING
                )
        if delivered:
            self.message_user(request, _("%(count)d order(s) delivered.") % {"count": delivered}, messages.SUCCESS)
        if skipped:
            self.message_user(
                request, _("%(count)d selected order(s) were not awaiting stock.") % {"count": skipped}, messages.INFO
            )

    @action(description=_("Fulfilment queue"), url_path="queue", permissions=["fulfil"], icon="assignment_late")
    def fulfilment_queue(self, request):
        orders = (
            Order.objects.filter(status__in=QUEUE)
            .order_by("paid_at", "pk")
            .prefetch_related(Prefetch("lines", queryset=OrderLine.objects.select_related("variant__product")))
        )
        rows = [
            {
                "order": order,
                "lines": [(line, checkout_input_items(line)) for line in order.lines.all()],
                "fulfil_url": reverse("admin:orders_order_fulfil", args=[order.pk]),
                "change_url": reverse("admin:orders_order_change", args=[order.pk]),
            }
            for order in orders[:200]
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": _("Fulfilment queue"),
            "opts": self.model._meta,
            "rows": rows,
            "total": orders.count(),
        }
        return TemplateResponse(request, "admin/orders/order/fulfilment_queue.html", context)

    @action(description=_("Fulfil"), url_path="fulfil", permissions=["fulfil"], icon="local_shipping")
    def fulfil(self, request, object_id):
        order = self.get_object(request, object_id)
        if order is None:
            raise Http404
        form = FulfilForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                order_fulfil_manually(
                    order_id=order.pk,
                    actor=request.user,
                    codes=form.cleaned_data["codes"],
                    note=form.cleaned_data["note"],
                )
            except DomainError as exc:
                messages.error(request, exc.message)
                order.refresh_from_db()
            else:
                messages.success(
                    request, _("Order %(number)s delivered; the customer is being e-mailed.") % {"number": order.number}
                )
                return HttpResponseRedirect(reverse("admin:orders_order_fulfilment_queue"))
        lines = order.lines.select_related("variant__product")
        context = {
            **self.admin_site.each_context(request),
            "title": _("Fulfil order %(number)s") % {"number": order.number},
            "opts": self.model._meta,
            "order": order,
            "open": order.status in QUEUE,
            "lines": [(line, checkout_input_items(line)) for line in lines],
            "form": form,
            "change_url": reverse("admin:orders_order_change", args=[order.pk]),
            "queue_url": reverse("admin:orders_order_fulfilment_queue"),
        }
        return TemplateResponse(request, "admin/orders/order/fulfil.html", context)

    @action(
        description=_("Confirm payment manually"), url_path="confirm-payment", permissions=["fulfil"], icon="payments"
    )
    def confirm_payment(self, request, object_id):
        """补单: confirm a payment the gateway took but never reported; always for the order total."""
        order = self.get_object(request, object_id)
        if order is None:
            raise Http404
        form = ConfirmPaymentForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                order = payment_confirm_manually(
                    order_id=order.pk,
                    staff=request.user,
                    confirmation_password=form.cleaned_data["confirmation_password"],
                    reason=form.cleaned_data["reason"],
                    gateway_reference=form.cleaned_data["gateway_reference"],
                )
            except DomainError as exc:
                messages.error(request, exc.message)
                order.refresh_from_db()
            else:
                messages.success(
                    request,
                    _("Payment of order %(number)s confirmed (%(total)s %(currency)s); now %(status)s.")
                    % {
                        "number": order.number,
                        "total": order.manual_confirmations.latest("pk").amount,
                        "currency": order.currency,
                        "status": order.get_status_display(),
                    },
                )
                return HttpResponseRedirect(reverse("admin:orders_order_change", args=[order.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": _("Confirm payment of order %(number)s") % {"number": order.number},
            "opts": self.model._meta,
            "order": order,
            "open": order.paid_at is None and order.status in CONFIRMABLE,
            "amount": manual_confirmation_amount(order),
            "password_set": confirmation_password_is_set(),
            "form": form,
            "change_url": reverse("admin:orders_order_change", args=[order.pk]),
        }
        return TemplateResponse(request, "admin/orders/order/confirm_payment.html", context)

    @action(description=_("Refund"), url_path="refund", permissions=["fulfil"], icon="currency_exchange")
    def refund(self, request, object_id):
        """Refund all or part of a paid order to its payment channel or the customer's wallet."""
        return refund_view(self, request, object_id)

    @action(description=_("Refund to the wallet (orders awaiting stock)"), permissions=["fulfil"])
    def refund_to_wallet(self, request, queryset):
        refund_to_wallet_action(self, request, queryset)
