"""Refunds in the shop admin: the refund page of an order, the refund list, and the inline on the
order. The order admin (``orders.admin``) links here; every change goes through ``payments.refunds``
and domain errors come back as messages."""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin, TabularInline
from unfold.decorators import action, display
from unfold.widgets import (
    UnfoldAdminDecimalFieldWidget,
    UnfoldAdminSelectWidget,
    UnfoldAdminTextInputWidget,
    UnfoldBooleanWidget,
)

from core.admin_site import ReadOnlyAdminMixin
from core.errors import DomainError
from orders.models import Order
from payments.models import Refund
from payments.refunds import (
    MIN_REASON_LENGTH,
    order_refundable_amount,
    orders_refund_to_wallet,
    refund_create,
    refund_destinations,
    refund_submit,
)

STOCK_REFUND_REASON = "paid, but out of stock: refunded to the wallet"


class RefundForm(forms.Form):
    amount = forms.DecimalField(
        label=_("Amount"),
        max_digits=18,
        decimal_places=2,
        min_value=Decimal("0.01"),
        widget=UnfoldAdminDecimalFieldWidget,
    )
    destination = forms.ChoiceField(label=_("Refund to"), widget=UnfoldAdminSelectWidget)
    reason = forms.CharField(
        label=_("Reason"),
        min_length=MIN_REASON_LENGTH,
        max_length=255,
        widget=UnfoldAdminTextInputWidget,
        help_text=_("Recorded with your name and shown in the order history."),
    )
    confirm = forms.BooleanField(
        label=_("Yes, refund this amount now"),
        widget=UnfoldBooleanWidget,
        help_text=_("A refund cannot be undone."),
    )

    def __init__(self, *args, order: Order, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["destination"].choices = [(d, Refund.Destination(d).label) for d in refund_destinations(order)]


def refund_view(model_admin, request, object_id):
    """The order's refund page: amount (up to what is left), destination, reason, confirmation."""
    order = model_admin.get_object(request, object_id)
    if order is None:
        raise Http404
    refundable = order_refundable_amount(order)
    form = RefundForm(request.POST or None, order=order, initial={"amount": refundable})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            refund = refund_create(
                order_id=order.pk,
                amount=data["amount"],
                destination=data["destination"],
                staff=request.user,
                reason=data["reason"],
            )
        except DomainError as exc:
            messages.error(request, exc.message)
            order.refresh_from_db()
            refundable = order_refundable_amount(order)
        else:
            messages.success(
                request,
                _("Refunded %(amount)s %(currency)s to %(destination)s; the order is now %(status)s.")
                % {
                    "amount": refund.amount,
                    "currency": refund.currency,
                    "destination": refund.get_destination_display(),
                    "status": Order.objects.get(pk=order.pk).get_status_display(),
                },
            )
            return HttpResponseRedirect(reverse("admin:orders_order_change", args=[order.pk]))
    context = {
        **model_admin.admin_site.each_context(request),
        "title": _("Refund order %(number)s") % {"number": order.number},
        "opts": model_admin.model._meta,
        "order": order,
        "refundable": refundable,
        "refunds": order.refunds.select_related("staff"),
        "form": form,
        "wallet_offer": order.status == Order.Status.AWAITING_STOCK and order.customer_id and refundable > 0,
        "wallet_url": reverse("admin:orders_order_refund_to_wallet", args=[order.pk]),
        "change_url": reverse("admin:orders_order_change", args=[order.pk]),
    }
    return TemplateResponse(request, "admin/orders/order/refund.html", context)


def refund_to_wallet_view(model_admin, request, object_id):
    """One click (POST) for an order paid but left without stock: all of it back to the wallet."""
    if not model_admin.has_fulfil_permission(request):
        raise PermissionDenied
    order = model_admin.get_object(request, object_id)
    if order is None:
        raise Http404
    change_url = reverse("admin:orders_order_change", args=[order.pk])
    if request.method != "POST":
        return HttpResponseRedirect(reverse("admin:orders_order_refund", args=[order.pk]))
    made, skipped = orders_refund_to_wallet(order_ids=[order.pk], staff=request.user, reason=STOCK_REFUND_REASON)
    for refund in made:
        messages.success(
            request,
            _("Refunded %(amount)s %(currency)s to the customer's wallet.")
            % {"amount": refund.amount, "currency": refund.currency},
        )
    for number, why in skipped:
        messages.error(request, format_html("{}: {}", number, why))
    return HttpResponseRedirect(change_url)


def refund_to_wallet_action(model_admin, request, queryset) -> None:
    """Bulk: refund the selected orders awaiting stock to their customers' wallets."""
    ids = list(queryset.values_list("pk", flat=True))
    made, skipped = orders_refund_to_wallet(order_ids=ids, staff=request.user, reason=STOCK_REFUND_REASON)
    if made:
        model_admin.message_user(
            request, _("%(count)d order(s) refunded to the wallet.") % {"count": len(made)}, messages.SUCCESS
        )
    for number, why in skipped:
        model_admin.message_user(request, format_html("{}: {}", number, why), messages.WARNING)


class RefundInline(ReadOnlyAdminMixin, TabularInline):
    """The order's refunds on its change page."""

    model = Refund
    extra = 0
    can_delete = False
    fields = ["created", "amount", "destination", "status", "gateway_refund_id", "staff", "reason", "error"]
    readonly_fields = fields


@admin.register(Refund)
class RefundAdmin(ModelAdmin):
    list_display = ["created", "order_link", "amount_display", "destination", "status_display", "staff", "reason"]
    list_filter = ["status", "destination", "provider", "created"]
    search_fields = ["order__number", "gateway_refund_id", "reason"]
    list_select_related = ["order", "staff"]
    fields = [
        "order",
        "amount",
        "currency",
        "destination",
        "provider",
        "status",
        "gateway_refund_id",
        "gateway_status",
        "error",
        "staff",
        "reason",
        "created",
        "completed_at",
    ]
    readonly_fields = fields
    actions = ["submit_pending"]

    def has_add_permission(self, request):
        return False  # refunds start from the order (Orders → the order → Refund)

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request, obj=None):
        return False  # refunds are the record of money given back

    def has_submit_permission(self, request, obj=None):
        return request.user.has_perm("orders.change_order")

    @display(description=_("Order"), ordering="order__number")
    def order_link(self, obj: Refund):
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:orders_order_change", args=[obj.order_id]), obj.order.number
        )

    @display(description=_("Amount"), ordering="amount")
    def amount_display(self, obj: Refund) -> str:
        return f"{obj.amount} {obj.currency}"

    @display(
        description=_("Status"),
        ordering="status",
        label={Refund.Status.PENDING: "warning", Refund.Status.SUCCEEDED: "success", Refund.Status.FAILED: "danger"},
    )
    def status_display(self, obj: Refund):
        return obj.status, obj.get_status_display()

    @action(description=_("Submit pending refunds to the gateway again"), permissions=["submit"])
    def submit_pending(self, request, queryset):
        for refund_id in queryset.filter(status=Refund.Status.PENDING).values_list("pk", flat=True):
            try:
                refund = refund_submit(refund_id=refund_id)
            except DomainError as exc:
                self.message_user(request, exc.message, messages.ERROR)
            else:
                self.message_user(request, str(refund), messages.SUCCESS)
