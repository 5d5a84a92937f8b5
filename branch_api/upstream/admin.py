"""A branch's admin for its Site A connection: status and operations, what it sells from Site A (with
a page browsing Site A's catalog live), its markup, and the purchases of customer orders.

Only on branch domains: the upstream tables exist in branch schemas, not in the public one. Stored
credentials are never shown; they can only be replaced.
"""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST
from unfold.admin import ModelAdmin
from unfold.decorators import action, display
from unfold.widgets import UnfoldAdminDecimalFieldWidget, UnfoldAdminPasswordWidget, UnfoldAdminSelectWidget

from branch_api.upstream.credentials import connection_credentials
from branch_api.upstream.models import UpstreamConnection, UpstreamPurchase, UpstreamSelection
from branch_api.upstream.selectors import markup_percent_get
from branch_api.upstream.services import (
    branch_markup_set,
    connection_balance,
    connection_ping,
    connection_save,
    connection_top_up_start,
    purchase_retry_now,
    remote_catalog_page,
    selection_add,
    selection_remove,
    sync_full,
    sync_incremental,
)
from catalog.models import Category
from core.admin_site import TenantSchemaOnlyAdmin
from core.errors import DomainError

# --- Connection -------------------------------------------------------------------------------------


def _formfield(db_field, **kwargs):
    if isinstance(db_field, models.URLField):
        kwargs.setdefault("assume_scheme", "https")  # a URL typed without a scheme means https
    return db_field.formfield(**kwargs)


class ConnectionForm(forms.ModelForm):
    api_key = forms.CharField(
        label=_("API key"),
        required=False,
        strip=True,
        widget=UnfoldAdminPasswordWidget(render_value=False, attrs={"autocomplete": "off"}),
        help_text=_("'prefix.secret' as issued by Site A. Leave empty to keep the stored key."),
    )
    signing_secret = forms.CharField(
        label=_("Signing secret"),
        required=False,
        strip=True,
        widget=UnfoldAdminPasswordWidget(render_value=False, attrs={"autocomplete": "off"}),
        help_text=_("Leave empty to keep the stored secret."),
    )
    markup_percent = forms.DecimalField(
        label=_("Markup on Site A's cost, %"),
        required=False,
        min_value=Decimal("0"),
        max_value=Decimal("1000"),
        decimal_places=2,
        widget=UnfoldAdminDecimalFieldWidget,
        help_text=_(
            "Customer price = cost × (1 + markup). Kept as the 'everything' rule of the storefront price "
            "list; category, product and variant rules there take precedence."
        ),
    )

    class Meta:
        model = UpstreamConnection
        fields = ["base_url", "host_header", "is_enabled"]
        formfield_callback = _formfield

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["markup_percent"].initial = markup_percent_get()
        if self.instance.pk is None:
            self.fields["api_key"].required = self.fields["signing_secret"].required = True

    def clean_api_key(self):
        value = self.cleaned_data["api_key"]
        prefix, dot, secret = value.partition(".")
        if value and not (dot and prefix and secret):
            raise forms.ValidationError(_("An API key looks like 'prefix.secret'."))
        return value


@admin.register(UpstreamConnection)
class UpstreamConnectionAdmin(TenantSchemaOnlyAdmin, ModelAdmin):
    form = ConnectionForm
    formfield_overrides = {
        **ModelAdmin.formfield_overrides,
        models.URLField: {**ModelAdmin.formfield_overrides.get(models.URLField, {}), "assume_scheme": "https"},
    }
    list_display = ["base_url", "status_display", "protocol_version", "last_sync_at", "balance_display"]
    readonly_fields = [
        "status_display",
        "credentials_display",
        "protocol_version",
        "clock_skew_seconds",
        "last_ping_at",
        "last_error",
        "last_error_at",
        "last_sync_at",
        "last_full_sync_at",
        "last_sync_result",
        "balance_display",
        "balance_checked_at",
        "payment_mode_display",
    ]
    change_form_outer_before_template = "admin/branch_upstream/upstreamconnection/operations.html"

    def get_fieldsets(self, request, obj=None):
        settings_fields = ["base_url", "host_header", "is_enabled", "api_key", "signing_secret"]
        if obj is None:
            return [(_("Site A"), {"fields": settings_fields})]
        return [
            (_("Status"), {"fields": self.readonly_fields}),
            (_("Site A"), {"fields": [*settings_fields[:3], "credentials_display", *settings_fields[3:]]}),
            (_("Prices"), {"fields": ["markup_percent"]}),
        ]

    def has_add_permission(self, request):
        # One connection per shop (installed at provisioning); a bare shop may add it by hand.
        return super().has_add_permission(request) and not UpstreamConnection.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False  # disable it instead: purchases and copies refer to this Site A

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_permission(request):  # also on Site A, where the table does not exist
            raise PermissionDenied
        only = UpstreamConnection.objects.order_by("pk").first()
        if only is not None:
            return HttpResponseRedirect(reverse("admin:branch_upstream_upstreamconnection_change", args=[only.pk]))
        return super().changelist_view(request, extra_context)

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        connection_save(
            connection=obj,
            base_url=data["base_url"],
            host_header=data.get("host_header", ""),
            is_enabled=data.get("is_enabled", True),
            api_key=data.get("api_key", ""),
            signing_secret=data.get("signing_secret", ""),
        )
        if change and data.get("markup_percent") is not None and data["markup_percent"] != markup_percent_get():
            branch_markup_set(percent=data["markup_percent"])

    @display(
        description=_("Status"),
        label={
            UpstreamConnection.Status.OK: "success",
            UpstreamConnection.Status.ERROR: "danger",
            UpstreamConnection.Status.UNKNOWN: "info",
        },
    )
    def status_display(self, obj: UpstreamConnection):
        # A plain value: unfold renders a (value, label) pair raw on a change page's read-only field.
        return obj.status

    @display(description=_("Who takes the customers' payments"))
    def payment_mode_display(self, obj: UpstreamConnection) -> str:
        # Set by Site A in its branch terms; a shop on another server always uses its own channels.
        from branch_api.provider.collect import collect_mode_active

        if collect_mode_active():
            return _("Site A collects through its channels; the profit is credited to the balance at Site A")
        return _("This shop, through its own payment channels (the balance at Site A is pre-paid)")

    @display(description=_("Balance at Site A"))
    def balance_display(self, obj: UpstreamConnection) -> str:
        return "—" if obj.balance is None else f"{obj.balance} {obj.balance_currency}".strip()

    @display(description=_("Credentials"))
    def credentials_display(self, obj: UpstreamConnection) -> str:
        if not (obj.api_key_encrypted and obj.signing_secret_encrypted):
            return _("not set")
        try:
            prefix = connection_credentials(obj)[0].partition(".")[0]
        except Exception:  # a key that no longer decrypts (rotated away): say so, show nothing
            return _("stored, but unreadable with the current keys: paste them again")
        # The key prefix is public (it names the key in Site A's audit log); the secrets never leave.
        return _("stored (key %(prefix)s…)") % {"prefix": prefix}

    # Operations: POST-only views (buttons on the change page), never inside the admin's transaction.

    def get_urls(self):
        operations = [
            path(
                f"<path:object_id>/{name}/",
                self.admin_site.admin_view(require_POST(self._operation(function, success))),
                name=f"branch_upstream_upstreamconnection_{name}",
            )
            for name, function, success in [
                ("ping", connection_ping, self._pinged),
                ("sync", sync_incremental, self._synced),
                ("full-sync", sync_full, self._synced),
                ("balance", connection_balance, self._balance),
            ]
        ]
        top_up = path(
            "<path:object_id>/top-up/",
            self.admin_site.admin_view(require_POST(self._top_up)),
            name="branch_upstream_upstreamconnection_top-up",
        )
        return [*operations, top_up, *super().get_urls()]

    def _top_up(self, request, object_id):
        """Send the owner to Site A's payment page; Site A sends them back here once paid."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        back = request.build_absolute_uri(reverse("admin:branch_upstream_upstreamconnection_change", args=[object_id]))
        try:
            pay_url = connection_top_up_start(
                amount=request.POST.get("amount", ""), return_url=f"{back}?{self.TOPPED_UP}=1"
            )
        except (DomainError, ArithmeticError, ValueError) as exc:
            messages.error(request, getattr(exc, "message", None) or _("Enter an amount between 0.01 and 100,000."))
            return HttpResponseRedirect(back)
        return HttpResponseRedirect(pay_url)

    TOPPED_UP = "topped_up"

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if request.method == "GET" and self.TOPPED_UP in request.GET and self.has_change_permission(request):
            # Back from Site A's payment page: the stored balance predates the payment, so ask again
            # rather than show the owner a balance without the money just paid.
            try:
                balance = connection_balance()
            except DomainError as exc:
                messages.warning(request, format_html("{}: {}", exc.code, exc.message))
            else:
                messages.success(
                    request, _("Back from Site A: the balance at Site A is now %(balance)s.") % {"balance": balance}
                )
            return HttpResponseRedirect(request.path)
        return super().change_view(request, object_id, form_url, extra_context)

    def _operation(self, function, success):
        def view(request, object_id):
            if not self.has_change_permission(request):
                raise PermissionDenied
            if not UpstreamConnection.objects.filter(pk=object_id).exists():
                raise Http404
            try:
                result = function()
            except DomainError as exc:
                messages.error(request, format_html("{}: {}", exc.code, exc.message))
            else:
                messages.success(request, success(result))
            return HttpResponseRedirect(reverse("admin:branch_upstream_upstreamconnection_change", args=[object_id]))

        return view

    @staticmethod
    def _pinged(result) -> str:
        return _("Site A answered: protocol %(protocol)s, branch %(branch)s, clock skew %(skew)s s.") % {
            "protocol": result.protocol,
            "branch": result.branch,
            "skew": result.clock_skew_seconds,
        }

    @staticmethod
    def _synced(result) -> str:
        return _("Sync done: %(summary)s.") % {"summary": result.summary()}

    @staticmethod
    def _balance(result) -> str:
        return _("Balance at Site A: %(balance)s.") % {"balance": result}


# --- Selection --------------------------------------------------------------------------------------


class SelectionForm(forms.ModelForm):
    class Meta:
        model = UpstreamSelection
        fields = ["kind", "remote_id", "name", "local_category"]


class BrowseForm(forms.Form):
    local_category = forms.ModelChoiceField(
        label=_("Place copies in"),
        queryset=Category.objects.none(),
        required=False,
        empty_label=_("Mirror Site A's categories"),
        widget=UnfoldAdminSelectWidget,
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["local_category"].queryset = Category.objects.order_by("path")


@admin.register(UpstreamSelection)
class UpstreamSelectionAdmin(TenantSchemaOnlyAdmin, ModelAdmin):
    form = SelectionForm
    list_display = ["name", "kind", "remote_id", "local_category", "created"]
    list_filter = ["kind"]
    search_fields = ["name"]
    list_select_related = ["local_category"]
    actions_list = ["browse"]

    def get_readonly_fields(self, request, obj=None):
        return ["kind", "remote_id"] if obj is not None else []

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        saved = selection_add(
            kind=obj.kind, remote_id=obj.remote_id, name=data.get("name", ""), local_category=data.get("local_category")
        )
        obj.pk = saved.pk
        messages.info(request, _("The next sync (within five minutes, or 'Full resync' now) applies the change."))

    def delete_model(self, request, obj):
        selection_remove(selection_id=obj.pk)

    def delete_queryset(self, request, queryset):
        for pk in list(queryset.values_list("pk", flat=True)):
            selection_remove(selection_id=pk)

    def has_browse_permission(self, request):
        return self.has_view_permission(request)

    @action(description=_("Browse Site A's catalog"), url_path="browse", permissions=["browse"], icon="travel_explore")
    def browse(self, request):
        if request.method == "POST":
            if not self.has_add_permission(request):
                raise PermissionDenied
            return self._browse_add(request)
        page = int(request.GET["page"]) if request.GET.get("page", "").isdigit() else 1
        try:
            catalog = remote_catalog_page(page=max(page, 1), page_size=50)
        except DomainError as exc:
            messages.error(request, format_html("{}: {}", exc.code, exc.message))
            catalog = {"categories": [], "results": [], "count": 0, "next_page": None}
        chosen = set(UpstreamSelection.objects.values_list("kind", "remote_id"))
        categories = _category_rows(catalog["categories"], chosen)
        names = {row["id"]: row["name"] for row in categories}
        selected_subtrees = {row["id"] for row in categories if row["selected"] or row["inherited"]}
        products = [
            {
                **product,
                "category_name": names.get(product.get("category_id"), ""),
                "selected": (UpstreamSelection.Kind.PRODUCT, product["id"]) in chosen,
                "excluded": (UpstreamSelection.Kind.EXCLUDED, product["id"]) in chosen,
                "inherited": product.get("category_id") in selected_subtrees,
            }
            for product in catalog["results"]
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": _("Site A's catalog"),
            "opts": self.model._meta,
            "categories": categories,
            "products": products,
            "count": catalog["count"],
            "page": page,
            "previous_url": f"?page={page - 1}" if page > 1 else "",
            "next_url": f"?page={catalog['next_page']}" if catalog.get("next_page") else "",
            "form": BrowseForm(),
            "changelist_url": reverse("admin:branch_upstream_upstreamselection_changelist"),
        }
        return TemplateResponse(request, "admin/branch_upstream/upstreamselection/browse.html", context)

    def _browse_add(self, request):
        form = BrowseForm(request.POST)
        local_category = form.cleaned_data["local_category"] if form.is_valid() else None
        added = 0
        for kind in UpstreamSelection.Kind.values:
            for value in request.POST.getlist(kind):
                if not value.isdigit() or len(value) > 18:
                    continue
                name = request.POST.get(f"name_{kind}_{value}", "")
                selection_add(kind=kind, remote_id=int(value), name=name, local_category=local_category)
                added += 1
        if not added:
            messages.warning(request, _("Tick the categories or products to sell, or the products to exclude."))
            return HttpResponseRedirect(reverse("admin:branch_upstream_upstreamselection_browse"))
        try:
            result = sync_full()
        except DomainError as exc:
            messages.warning(
                request,
                format_html("{} {}: {}", _("Added; the sync failed and will be retried."), exc.code, exc.message),
            )
        else:
            messages.success(
                request, _("%(count)d added. Sync: %(summary)s.") % {"count": added, "summary": result.summary()}
            )
        return HttpResponseRedirect(reverse("admin:branch_upstream_upstreamselection_changelist"))


def _category_rows(remote: list[dict], chosen: set[tuple[str, int]]) -> list[dict]:
    """Site A's categories in tree order with depth, and whether each is selected (or inside one)."""
    by_parent: dict[int | None, list[dict]] = {}
    for category in remote:
        by_parent.setdefault(category.get("parent_id"), []).append(category)
    known = {c["id"] for c in remote}
    rows: list[dict] = []

    def walk(parent_id, depth: int, inherited: bool) -> None:
        for category in sorted(by_parent.get(parent_id, []), key=lambda c: (c.get("sort_order", 0), c["name"])):
            selected = (UpstreamSelection.Kind.CATEGORY, category["id"]) in chosen
            rows.append(
                {**category, "depth": depth, "indent": depth * 1.5, "selected": selected, "inherited": inherited}
            )
            walk(category["id"], depth + 1, inherited or selected)

    for root in [p for p in by_parent if p is None or p not in known]:
        walk(root, 0, False)
    return rows


# --- Purchases --------------------------------------------------------------------------------------


@admin.register(UpstreamPurchase)
class UpstreamPurchaseAdmin(TenantSchemaOnlyAdmin, ModelAdmin):
    list_display = [
        "reference",
        "order_link",
        "status_display",
        "quantity",
        "expected_total",
        "attempts",
        "last_error_code",
        "next_attempt_at",
        "remote_number",
        "created",
    ]
    list_filter = ["status", "last_error_code"]
    search_fields = ["reference", "remote_number", "order_line__order__number"]
    list_select_related = ["order_line__order"]
    actions = ["retry_now"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request)  # bulk actions only

    def has_delete_permission(self, request, obj=None):
        return False  # the record that a purchase was made

    @display(description=_("Order"))
    def order_link(self, obj: UpstreamPurchase):
        order = obj.order_line.order
        return format_html('<a href="{}">{}</a>', reverse("admin:orders_order_change", args=[order.pk]), order.number)

    @display(
        description=_("Status"),
        label={
            UpstreamPurchase.Status.DONE: "success",
            UpstreamPurchase.Status.BLOCKED: "danger",
            UpstreamPurchase.Status.PENDING: "warning",
        },
    )
    def status_display(self, obj: UpstreamPurchase):
        return obj.status, obj.get_status_display()

    @action(description=_("Retry now"), permissions=["change"])
    def retry_now(self, request, queryset):
        count = purchase_retry_now(purchase_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, _("%(count)d order(s) queued for another attempt.") % {"count": count})
