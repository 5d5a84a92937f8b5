"""Payments admin: attempts and inbound callbacks, read-only (they are the audit trail of the gateways)."""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin
from unfold.decorators import display

from payments.models import PaymentAttempt, PaymentCallback


class ReadOnlyAdmin(ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(PaymentAttempt)
class PaymentAttemptAdmin(ReadOnlyAdmin):
    list_display = ["created", "order_link", "provider", "amount", "currency", "status_display", "external_id"]
    list_filter = ["status", "provider", "created"]
    search_fields = ["token", "external_id", "order__number"]
    list_select_related = ["order"]
    fields = ["order", "provider", "token", "amount", "currency", "status", "external_id", "created", "succeeded_at"]
    readonly_fields = fields

    @display(description=_("Order"), ordering="order__number")
    def order_link(self, obj: PaymentAttempt):
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:orders_order_change", args=[obj.order_id]), obj.order.number
        )

    @display(
        description=_("Status"),
        ordering="status",
        label={
            PaymentAttempt.Status.CREATED: "info",
            PaymentAttempt.Status.SUCCEEDED: "success",
            PaymentAttempt.Status.FAILED: "danger",
        },
    )
    def status_display(self, obj: PaymentAttempt):
        return obj.status, obj.get_status_display()


@admin.register(PaymentCallback)
class PaymentCallbackAdmin(ReadOnlyAdmin):
    list_display = ["created", "provider", "accepted", "error_code", "attempt", "remote_ip"]
    list_filter = ["accepted", "provider", "error_code", "created"]
    search_fields = ["attempt__token", "attempt__order__number", "error_code"]
    list_select_related = ["attempt"]
    fields = ["provider", "attempt", "accepted", "error_code", "remote_ip", "created", "payload"]
    readonly_fields = fields
