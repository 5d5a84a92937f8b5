"""Reconciliation in each shop's admin: runs per channel and day, the CSV upload, the mismatches and
their resolution. The pages parse input and call ``payments.reconciliation``; nothing else."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin
from unfold.decorators import action, display
from unfold.widgets import INPUT_CLASSES, UnfoldAdminSelectWidget

from core.errors import DomainError
from payments.models import PaymentChannel, ReconciliationItem, ReconciliationRun
from payments.reconciliation import (
    automatic_source,
    reconciliation_item_resolve,
    reconciliation_run,
    reconciliation_run_csv,
)

MAX_UPLOAD_BYTES = 5 * 1024 * 1024


class DayInput(forms.DateInput):
    input_type = "date"

    def __init__(self):
        super().__init__(attrs={"class": " ".join(INPUT_CLASSES)}, format="%Y-%m-%d")


def _channel_choices(*, automatic_only: bool) -> list[tuple[str, str]]:
    return [
        (channel.provider, f"{channel.name} ({channel.provider})")
        for channel in PaymentChannel.objects.order_by("sort_order", "pk")
        if not automatic_only or automatic_source(channel.provider) is not None
    ]


class RunForm(forms.Form):
    provider = forms.ChoiceField(label=_("Channel"), widget=UnfoldAdminSelectWidget)
    day = forms.DateField(label=_("Day"), widget=DayInput())

    automatic_only = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["provider"].choices = _channel_choices(automatic_only=self.automatic_only)
        self.fields["day"].initial = timezone.localdate() - timedelta(days=1)

    def clean_day(self):
        day = self.cleaned_data["day"]
        if day > timezone.localdate():
            raise forms.ValidationError(_("That day has not happened yet."))
        return day


class UploadForm(RunForm):
    file = forms.FileField(
        label=_("Gateway statement (CSV)"),
        help_text=_(
            "One row per payment, first row naming the columns: trade number or our reference, amount, "
            "and optionally currency, time and status. UTF-8 or GB18030; comma, semicolon or tab separated."
        ),
    )

    automatic_only = False

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_UPLOAD_BYTES:
            raise forms.ValidationError(_("The file is larger than 5 MB."))
        return upload


class ResolveForm(forms.Form):
    item = forms.IntegerField(widget=forms.HiddenInput)
    note = forms.CharField(
        label=_("Note"), max_length=2000, widget=forms.TextInput(attrs={"class": " ".join(INPUT_CLASSES)})
    )


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ModelAdmin):
    list_display = [
        "day",
        "provider",
        "source",
        "status_display",
        "ours_count",
        "ours_total",
        "theirs_count",
        "theirs_total",
        "mismatch_count",
        "open_count",
        "finished_at",
    ]
    list_filter = ["status", "provider", "source", "day"]
    search_fields = ["provider", "file_name"]
    date_hierarchy = "day"
    actions_list = ["run_day", "upload_csv"]

    def get_queryset(self, request):
        return (
            super().get_queryset(request).annotate(open_items=Count("items", filter=Q(items__resolved_at__isnull=True)))
        )

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_run_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("payments.change_reconciliationrun")

    @display(
        description=_("Status"),
        ordering="status",
        label={
            ReconciliationRun.Status.RUNNING: "info",
            ReconciliationRun.Status.COMPLETED: "success",
            ReconciliationRun.Status.FAILED: "danger",
        },
    )
    def status_display(self, obj: ReconciliationRun):
        return obj.status, obj.get_status_display()

    @display(description=_("Open"), ordering="open_items")
    def open_count(self, obj: ReconciliationRun) -> int:
        return obj.open_items

    def _page(self, request, template: str, **context):
        return TemplateResponse(
            request,
            f"admin/payments/reconciliationrun/{template}",
            {**self.admin_site.each_context(request), "opts": self.model._meta, **context},
        )

    def _report_url(self, run: ReconciliationRun) -> str:
        return reverse("admin:payments_reconciliationrun_change", args=[run.pk])

    def _after_run(self, request, run: ReconciliationRun):
        if run.status == ReconciliationRun.Status.FAILED:
            messages.error(request, _("Reconciliation failed: %(error)s") % {"error": run.error_message})
        else:
            messages.success(
                request,
                _("Reconciled %(provider)s on %(day)s: %(matched)d matched, %(mismatches)d mismatches.")
                % {
                    "provider": run.provider,
                    "day": run.day,
                    "matched": run.matched_count,
                    "mismatches": run.mismatch_count,
                },
            )
        return HttpResponseRedirect(self._report_url(run))

    @action(description=_("Run reconciliation"), url_path="run", permissions=["run"], icon="sync")
    def run_day(self, request):
        form = RunForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                run = reconciliation_run(
                    provider=form.cleaned_data["provider"], day=form.cleaned_data["day"], actor=request.user
                )
            except DomainError as exc:
                form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            else:
                return self._after_run(request, run)
        return self._page(request, "run.html", title=_("Run reconciliation"), form=form, upload=False)

    @action(description=_("Upload gateway CSV"), url_path="upload", permissions=["run"], icon="upload_file")
    def upload_csv(self, request):
        form = UploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                run = reconciliation_run_csv(
                    provider=form.cleaned_data["provider"],
                    day=form.cleaned_data["day"],
                    content=upload.read(),
                    file_name=upload.name or "",
                    actor=request.user,
                )
            except DomainError as exc:
                form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            else:
                return self._after_run(request, run)
        return self._page(request, "run.html", title=_("Upload gateway CSV"), form=form, upload=True)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The run's report: totals, mismatches, and resolving them (change permission)."""
        run = self.get_object(request, object_id)
        if run is None or not self.has_view_permission(request, run):
            raise Http404
        can_resolve = self.has_change_permission(request, run)
        resolve_form = ResolveForm(request.POST or None)
        if request.method == "POST":
            if not can_resolve:
                raise PermissionDenied
            if resolve_form.is_valid():
                item_id = resolve_form.cleaned_data["item"]
                if not run.items.filter(pk=item_id).exists():
                    raise Http404
                try:
                    reconciliation_item_resolve(
                        item_id=item_id, actor=request.user, note=resolve_form.cleaned_data["note"]
                    )
                except DomainError as exc:
                    messages.error(request, exc.message)
                else:
                    messages.success(request, _("Marked as resolved."))
                    return HttpResponseRedirect(self._report_url(run))
            else:
                messages.error(request, _("Please say how this was resolved."))
        items = run.items.select_related("attempt__order", "resolved_by").order_by("resolved_at", "kind", "reference")
        return self._page(
            request,
            "report.html",
            title=_("Reconciliation: %(provider)s on %(day)s") % {"provider": run.provider, "day": run.day},
            run=run,
            items=list(items),
            can_resolve=can_resolve,
            confirmable_kind=ReconciliationItem.Kind.GATEWAY_PAID_OURS_NOT,
            has_automatic_source=automatic_source(run.provider) is not None,
            run_url=reverse("admin:payments_reconciliationrun_run_day"),
            list_url=reverse("admin:payments_reconciliationrun_changelist"),
        )
