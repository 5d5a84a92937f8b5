"""Site A admin for outbound webhooks (public schema only). Branches create and edit their endpoints
through the API (the secret is shown to them once); here staff watch deliveries, send a test ping,
replay, and disable or re-enable endpoints. Imported by branch_api.provider.admin."""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin
from unfold.decorators import action, display

from branch_api.provider.models import WebhookDelivery, WebhookEndpoint
from branch_api.provider.webhooks import (
    webhook_endpoint_disable,
    webhook_endpoint_enable,
    webhook_replay,
    webhook_test,
)
from core.admin_site import PublicSchemaOnlyAdmin
from core.errors import DomainError


class _ActionsMixin:
    def _apply(self, request, queryset, operation) -> None:
        done = 0
        for obj in queryset:
            try:
                operation(obj)
                done += 1
            except DomainError as exc:
                self.message_user(request, format_html("{}: {}", obj, exc.message), messages.WARNING)
        if done:
            self.message_user(request, _("%(count)d done.") % {"count": done}, messages.SUCCESS)


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(_ActionsMixin, PublicSchemaOnlyAdmin, ModelAdmin):
    list_display = ["url", "branch", "events_display", "active_display", "consecutive_failures", "created"]
    list_filter = ["is_active", "branch"]
    search_fields = ["url", "description", "branch__slug", "branch__name"]
    list_select_related = ["branch"]
    fields = [
        "branch",
        "url",
        "description",
        "events",
        "is_active",
        "disabled_at",
        "disabled_reason",
        "consecutive_failures",
        "failing_since",
        "created",
    ]
    readonly_fields = fields
    actions = ["send_test", "enable_endpoints", "disable_endpoints"]

    def has_add_permission(self, request):
        # The branch registers its endpoints through the API, which validates the URL (SSRF) and
        # hands the signing secret to the branch once; a row added here would have no secret.
        return False

    @display(description=_("Events"))
    def events_display(self, obj: WebhookEndpoint) -> str:
        return ", ".join(obj.events) or _("all")

    @display(description=_("Active"), label={True: "success", False: "danger"})
    def active_display(self, obj: WebhookEndpoint):
        return obj.is_active

    @action(description=_("Send a test ping"))
    def send_test(self, request, queryset):
        self._apply(request, queryset, lambda e: webhook_test(endpoint=e))

    @action(description=_("Re-enable selected endpoints"))
    def enable_endpoints(self, request, queryset):
        self._apply(request, queryset, lambda e: webhook_endpoint_enable(endpoint=e))

    @action(description=_("Disable selected endpoints"))
    def disable_endpoints(self, request, queryset):
        reason = f"Disabled by Site A ({request.user})."
        self._apply(request, queryset, lambda e: webhook_endpoint_disable(endpoint=e, reason=reason))


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(_ActionsMixin, PublicSchemaOnlyAdmin, ModelAdmin):
    list_display = [
        "message_id",
        "event_type",
        "endpoint",
        "status_display",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "created",
    ]
    list_filter = ["status", "event_type", "endpoint__branch"]
    search_fields = ["message_id", "endpoint__url", "endpoint__branch__slug"]
    list_select_related = ["endpoint__branch"]
    date_hierarchy = "created"
    fields = [
        "endpoint",
        "message_id",
        "event_type",
        "payload",
        "status",
        "attempts",
        "next_attempt_at",
        "last_status_code",
        "last_error",
        "created",
        "delivered_at",
    ]
    readonly_fields = fields
    actions = ["replay_deliveries"]

    def has_add_permission(self, request):
        return False

    @display(
        description=_("Status"),
        label={
            WebhookDelivery.Status.SUCCEEDED: "success",
            WebhookDelivery.Status.PENDING: "info",
            WebhookDelivery.Status.FAILED: "danger",
            WebhookDelivery.Status.GAVE_UP: "warning",
        },
    )
    def status_display(self, obj: WebhookDelivery):
        return obj.status

    @action(description=_("Replay (same webhook-id)"))
    def replay_deliveries(self, request, queryset):
        self._apply(request, queryset, lambda d: webhook_replay(delivery=d))
