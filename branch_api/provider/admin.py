"""Site A admin for the branch network (public schema only)."""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.db import models, transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin, TabularInline
from unfold.decorators import action, display
from unfold.widgets import UnfoldAdminDecimalFieldWidget, UnfoldAdminTextInputWidget

from branch_api.provider.models import (
    ApiAuditLog,
    ApiCredential,
    BranchPurchase,
    BranchSale,
    BranchSaleRefund,
    BranchTerms,
)
from branch_api.provider.services import (
    branch_balance_account,
    branch_top_up,
    credential_issue,
    credential_revoke,
    price_list_for,
)
from branch_api.provider.webhooks import webhook_emit_product_updated
from catalog.models import PriceRule
from core.admin_site import PublicSchemaOnlyAdmin, ReadOnlyAdminMixin


class TopUpForm(forms.Form):
    # unfold's widgets: Django's plain ones have no border on the admin's pages.
    amount = forms.DecimalField(
        label=_("Amount"),
        min_value=Decimal("0.01"),
        max_digits=18,
        decimal_places=2,
        widget=UnfoldAdminDecimalFieldWidget,
    )
    reference = forms.CharField(
        label=_("Reference (e.g. bank transfer id)"), max_length=64, widget=UnfoldAdminTextInputWidget
    )


class MarkupForm(forms.Form):
    percent = forms.DecimalField(
        label=_("Adjustment on Site A's cost, %"),
        max_digits=8,
        decimal_places=2,
        help_text=_("e.g. 5 = branches pay cost + 5 %. Replaces the list's global rule."),
        widget=UnfoldAdminDecimalFieldWidget,
    )


@admin.register(BranchTerms)
class BranchTermsAdmin(PublicSchemaOnlyAdmin, ModelAdmin):
    list_display = ["branch", "mode", "visibility", "price_list", "balance", "low_balance_threshold", "updated"]
    list_filter = ["mode", "show_everything"]
    search_fields = ["branch__slug", "branch__name"]
    filter_horizontal = ["visible_categories", "visible_products", "hidden_products"]
    autocomplete_fields = ["branch"]
    fields = [
        "branch",
        "mode",
        "price_list",
        "show_everything",
        "visible_categories",
        "visible_products",
        "hidden_products",
        "low_balance_threshold",
        "ip_allowlist",
        "rate_per_minute",
    ]
    actions = ["make_everything_visible", "set_global_adjustment"]
    actions_detail = ["top_up_balance", "issue_credential"]
    actions_list = ["network_report"]

    @action(description=_("Financial report"), url_path="report")
    def network_report(self, request):
        import csv
        from datetime import timedelta

        from django.http import HttpResponse

        from branch_api.provider.reports import branch_network_report
        from branch_api.provider.selectors import date_or_none

        today = timezone.localdate()
        start = date_or_none(request.GET.get("start")) or today - timedelta(days=30)
        end = date_or_none(request.GET.get("end")) or today
        rows = branch_network_report(start=start, end=end)
        if request.GET.get("format") == "csv":
            response = HttpResponse(content_type="text/csv")
            response["Content-Disposition"] = f'attachment; filename="branches-{start}-{end}.csv"'
            writer = csv.writer(response)
            writer.writerow(
                [
                    "branch",
                    "opening_balance",
                    "top_ups",
                    "collected",
                    "purchases",
                    "other",
                    "closing_balance",
                    "site_a_cost",
                    "site_a_margin",
                ]
            )
            for r in rows:
                writer.writerow(
                    [
                        r.branch.slug,
                        r.opening_balance,
                        r.top_ups,
                        r.collected,
                        r.purchases,
                        r.other,
                        r.closing_balance,
                        r.site_a_cost,
                        r.site_a_margin,
                    ]
                )
            return response
        return render(
            request,
            "admin/branch_provider/report.html",
            {
                **self.admin_site.each_context(request),
                "rows": rows,
                "start": start,
                "end": end,
                "title": _("Branch network report"),
            },
        )

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("branch", "price_list")

    def save_related(self, request, form, formsets, change):
        hidden_before = set(form.instance.hidden_products.values_list("pk", flat=True)) if change else set()
        super().save_related(request, form, formsets, change)
        # Visibility lives in many-to-many tables; touch `updated` so the change feed resends the catalog.
        BranchTerms.objects.filter(pk=form.instance.pk).update(updated=timezone.now())
        newly_hidden = set(form.instance.hidden_products.values_list("pk", flat=True)) - hidden_before
        if newly_hidden:
            # The branch hears at once (its sync then reads the whole catalog, without them).
            webhook_emit_product_updated(newly_hidden)

    @display(description=_("Visible"))
    def visibility(self, obj: BranchTerms) -> str:
        if obj.show_everything:
            return str(_("everything"))
        return _("%(c)d categories, %(p)d products") % {
            "c": obj.visible_categories.count(),
            "p": obj.visible_products.count(),
        }

    @display(description=_("Balance"))
    def balance(self, obj: BranchTerms):
        return branch_balance_account(obj.branch).natural_balance

    @action(description=_("Make the whole catalog visible"))
    def make_everything_visible(self, request, queryset):
        count = queryset.update(show_everything=True, updated=timezone.now())
        self.message_user(request, _("%(n)d branch(es) now see the whole catalog.") % {"n": count})

    @action(description=_("Set a global cost adjustment (%%)"))
    def set_global_adjustment(self, request, queryset):
        form = MarkupForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            with transaction.atomic():
                for terms in queryset.select_related("branch"):
                    price_list = price_list_for(terms.branch)
                    PriceRule.objects.filter(price_list=price_list, scope=PriceRule.Scope.ALL).delete()
                    PriceRule.objects.create(
                        price_list=price_list,
                        scope=PriceRule.Scope.ALL,
                        mode=PriceRule.Mode.PERCENT_MARKUP,
                        value=form.cleaned_data["percent"],
                    )
            self.message_user(request, _("Adjustment saved for %(n)d branch(es).") % {"n": queryset.count()})
            return None
        return render(
            request,
            "admin/branch_provider/adjustment.html",
            {
                **self.admin_site.each_context(request),
                "form": form,
                "queryset": queryset,
                "title": _("Global cost adjustment"),
                "action": "set_global_adjustment",
            },
        )

    @action(description=_("Top up balance"), url_path="top-up")
    def top_up_balance(self, request, object_id):
        terms = get_object_or_404(BranchTerms.objects.select_related("branch"), pk=object_id)
        form = TopUpForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            branch_top_up(
                branch=terms.branch,
                amount=data["amount"],
                reference=data["reference"],
                idempotency_key=f"admin-top-up:{terms.branch_id}:{data['reference']}",
            )
            self.message_user(request, _("Balance topped up by %(a)s.") % {"a": data["amount"]}, messages.SUCCESS)
            return redirect(reverse("admin:branch_provider_branchterms_change", args=[object_id]))
        return render(
            request,
            "admin/branch_provider/top_up.html",
            {
                **self.admin_site.each_context(request),
                "form": form,
                "terms": terms,
                "title": _("Top up %(branch)s") % {"branch": terms.branch.name},
            },
        )

    @action(description=_("Issue API credentials"), url_path="issue-credential")
    def issue_credential(self, request, object_id):
        terms = get_object_or_404(BranchTerms.objects.select_related("branch"), pk=object_id)
        if request.method != "POST":
            return render(
                request,
                "admin/branch_provider/issue_credential.html",
                {**self.admin_site.each_context(request), "terms": terms, "title": _("Issue API credentials")},
            )
        issued = credential_issue(branch=terms.branch, label=f"issued by {request.user}")
        return render(
            request,
            "admin/branch_provider/issued_credential.html",
            {
                **self.admin_site.each_context(request),
                "terms": terms,
                "issued": issued,
                "title": _("New API credentials"),
            },
        )


@admin.register(ApiCredential)
class ApiCredentialAdmin(PublicSchemaOnlyAdmin, ModelAdmin):
    list_display = ["prefix", "branch", "label", "created", "last_used_at", "state"]
    list_filter = ["revoked_at"]
    search_fields = ["prefix", "branch__slug"]
    readonly_fields = ["branch", "prefix", "label", "created", "last_used_at", "revoked_at"]
    fields = readonly_fields
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False  # issued from Branch terms, so the secret can be shown exactly once

    @display(description=_("State"), label={"active": "success", "revoked": "danger"})
    def state(self, obj):
        return "revoked" if obj.revoked_at else "active"

    @action(description=_("Revoke selected credentials"))
    def revoke(self, request, queryset):
        for credential in queryset:
            credential_revoke(credential=credential)
        self.message_user(request, _("Revoked."), messages.SUCCESS)


@admin.register(ApiAuditLog)
class ApiAuditLogAdmin(ReadOnlyAdminMixin, PublicSchemaOnlyAdmin, ModelAdmin):
    list_display = ["created", "branch", "method", "path", "status_code", "error_code", "latency_ms", "ip"]
    list_filter = ["status_code", "error_code", "method"]
    search_fields = ["path", "key_prefix", "idempotency_key", "branch__slug"]
    date_hierarchy = "created"


@admin.register(BranchPurchase)
class BranchPurchaseAdmin(ReadOnlyAdminMixin, PublicSchemaOnlyAdmin, ModelAdmin):
    list_display = ["created", "branch", "reference", "order_link", "total"]
    list_filter = ["branch"]
    search_fields = ["reference", "order__number", "branch__slug"]
    list_select_related = ["branch", "order"]

    @display(description=_("Order"))
    def order_link(self, obj):
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:orders_order_change", args=[obj.order_id]), obj.order.number
        )


from branch_api.provider import webhooks_admin  # noqa: E402,F401  (registers the webhook admin)


class BranchSaleRefundInline(ReadOnlyAdminMixin, TabularInline):
    """The refunds Site A's gateway reported for the collected payment, and what each booked itself."""

    model = BranchSaleRefund
    fields = readonly_fields = ["created", "provider", "gateway_refund_id", "amount", "booked", "gateway_status"]
    extra = 0
    can_delete = False


@admin.register(BranchSale)
class BranchSaleAdmin(ReadOnlyAdminMixin, PublicSchemaOnlyAdmin, ModelAdmin):
    """Branch orders Site A collected (platform-collect mode): read-only, like the ledger behind them.
    Second payments of an order (the customer paid twice) show as owed until they are given back."""

    list_display = [
        "created",
        "branch",
        "order_number",
        "amount",
        "currency",
        "collected_at",
        "settled_at",
        "duplicate_owed",
    ]
    list_filter = ["branch"]
    search_fields = ["order_number", "branch__slug"]
    list_select_related = ["branch"]
    actions = ["duplicates_refunded_outside"]
    inlines = [BranchSaleRefundInline]
    # The view-only page still builds its form: say what a URL without a scheme means (Django 6's default).
    formfield_overrides = {
        **ModelAdmin.formfield_overrides,
        models.URLField: {**ModelAdmin.formfield_overrides.get(models.URLField, {}), "assume_scheme": "https"},
    }

    def has_record_refund_permission(self, request) -> bool:
        return request.user.has_perm("ledger.add_transaction")

    @action(
        description=_("Second payments refunded in the gateway's dashboard (record them)"),
        permissions=["record_refund"],
    )
    def duplicates_refunded_outside(self, request, queryset):
        from branch_api.provider.collect import branch_sale_duplicate_refund, branch_sale_duplicates_open

        recorded = 0
        for sale in queryset.filter(duplicate_owed__gt=0):
            for attempt in branch_sale_duplicates_open(sale):
                recorded += branch_sale_duplicate_refund(attempt_id=attempt.pk, outside=True, staff=request.user)
        self.message_user(request, _("%(n)d second payment(s) recorded as refunded.") % {"n": recorded})
