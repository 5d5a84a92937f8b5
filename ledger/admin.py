"""Ledger admin, strictly read-only (the ledger is append-only): accounts with their statements,
journal transactions with their entries, and the gross-profit report."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django import forms
from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import F, Sum, Window
from django.db.models.functions import TruncDate
from django.http import Http404, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin, TabularInline
from unfold.decorators import action, display
from unfold.widgets import INPUT_CLASSES

from ledger.models import Account, Entry, Transaction

ZERO = Decimal("0.00")
STATEMENT_PAGE = 200
DEFAULT_DAYS = 30


class AppendOnlyMixin:
    """Nothing in the ledger admin adds, changes or deletes rows: postings go through ``ledger_post``."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class DateInput(forms.DateInput):
    input_type = "date"

    def __init__(self):
        super().__init__(attrs={"class": " ".join(INPUT_CLASSES)}, format="%Y-%m-%d")


class DateRangeForm(forms.Form):
    date_from = forms.DateField(label=_("From"), required=False, widget=DateInput())
    date_to = forms.DateField(label=_("Until (inclusive)"), required=False, widget=DateInput())

    def clean(self):
        data = super().clean()
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            raise forms.ValidationError(_("The start date is after the end date."))
        return data

    def dates(self) -> tuple[date, date]:
        """The chosen days, defaulting to the last 30 days up to today (shop time)."""
        today = timezone.localdate()
        data = self.cleaned_data if self.is_bound and self.is_valid() else {}
        end = data.get("date_to") or today
        start = data.get("date_from") or min(end, today) - timedelta(days=DEFAULT_DAYS - 1)
        return start, end


def _bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """Aware datetimes [start 00:00, day after end 00:00) in the shop's time zone."""
    zone = timezone.get_current_timezone()
    return (
        datetime.combine(start, time.min, tzinfo=zone),
        datetime.combine(end + timedelta(days=1), time.min, tzinfo=zone),
    )


# --- Reports (reads over entries; they hold no state) ------------------------------------------------


@dataclass
class ProfitRow:
    key: object  # a day, or a product id
    label: str
    revenue: Decimal = ZERO
    cost: Decimal = ZERO

    @property
    def profit(self) -> Decimal:
        return self.revenue - self.cost


def _in_range(code: str, start: date, end: date):
    since, until = _bounds(start, end)
    return Entry.objects.filter(account__code=code, created__gte=since, created__lt=until)


def _gross_profit(start: date, end: date, *, group: str, label) -> dict:
    """Revenue (-sales_revenue), cost (cost_of_goods) and profit per ``group`` value."""
    rows: dict = {}
    for code, attribute, sign in (("sales_revenue", "revenue", -1), ("cost_of_goods", "cost", 1)):
        entries = _in_range(code, start, end)
        if group == "day":
            entries = entries.annotate(day=TruncDate("created"))
        for row in entries.values(group).annotate(total=Sum("amount")):
            key = row[group]
            item = rows.setdefault(key, ProfitRow(key=key, label=label(key)))
            setattr(item, attribute, getattr(item, attribute) + sign * row["total"])
    return rows


def gross_profit_by_day(start: date, end: date) -> list[ProfitRow]:
    """Per day with activity, oldest first."""
    rows = _gross_profit(start, end, group="day", label=lambda day: day.isoformat())
    return [rows[day] for day in sorted(rows)]


def gross_profit_by_product(start: date, end: date) -> list[ProfitRow]:
    """Per product, most profitable first. Revenue and cost entries both carry ``product_id``."""
    from catalog.models import Product

    rows = _gross_profit(start, end, group="product_id", label=lambda pk: "")
    names = dict(Product.objects.filter(pk__in=[pk for pk in rows if pk]).values_list("pk", "name"))
    for product_id, row in rows.items():
        row.label = names.get(product_id, f"#{product_id}") if product_id else str(_("(not attributed)"))
    return sorted(rows.values(), key=lambda row: (-row.profit, row.label))


def _totals(rows: list[ProfitRow]) -> ProfitRow:
    return ProfitRow(
        key=None,
        label=str(_("Total")),
        revenue=sum((row.revenue for row in rows), ZERO),
        cost=sum((row.cost for row in rows), ZERO),
    )


def _profit_csv(rows: list[ProfitRow], first_column: str, filename: str) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow([first_column, "revenue", "cost", "profit"])
    for row in rows:
        writer.writerow([row.label, row.revenue, row.cost, row.profit])
    return response


# --- Admin ---------------------------------------------------------------------------------------------


@admin.register(Account)
class AccountAdmin(AppendOnlyMixin, ModelAdmin):
    list_display = ["code", "name", "kind", "currency", "balance", "may_go_negative", "owner"]
    list_filter = ["kind", "may_go_negative"]
    search_fields = ["code", "name", "owner_id"]
    fields = ["code", "name", "kind", "currency", "balance", "may_go_negative", "owner_type", "owner_id", "updated"]
    readonly_fields = fields
    actions_detail = ["statement"]
    actions_list = ["gross_profit"]

    @staticmethod
    def _date_range(request) -> tuple[DateRangeForm, date, date]:
        form = DateRangeForm(request.GET or None)
        start, end = form.dates()
        if not form.is_bound:  # show the default period in the inputs
            form = DateRangeForm(initial={"date_from": start, "date_to": end})
        return form, start, end

    @display(description=_("Owner"))
    def owner(self, obj: Account) -> str:
        return f"{obj.owner_type} {obj.owner_id}".strip() or "—"

    @action(description=_("Statement"), url_path="statement", permissions=["view"], icon="receipt_long")
    def statement(self, request, object_id):
        account = self.get_object(request, object_id)
        if account is None:
            raise Http404
        form, start, end = self._date_range(request)
        since, until = _bounds(start, end)
        entries = Entry.objects.filter(account=account)
        opening = entries.filter(created__lt=since).aggregate(total=Sum("amount"))["total"] or ZERO
        in_range = entries.filter(created__gte=since, created__lt=until)
        movement = in_range.aggregate(total=Sum("amount"))["total"] or ZERO
        rows = (
            in_range.select_related("transaction")
            # The window runs over the whole range before the page is cut, so every page's running
            # balance continues from the opening balance.
            .annotate(running=Window(Sum("amount"), order_by=[F("created").asc(), F("pk").asc()]))
            .order_by("created", "pk")
        )
        page = Paginator(rows, STATEMENT_PAGE).get_page(request.GET.get("page"))
        for entry in page.object_list:
            entry.balance_after = opening + entry.running
        query = request.GET.copy()
        query.pop("page", None)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Statement: %(account)s") % {"account": account},
            "opts": self.model._meta,
            "account": account,
            "form": form,
            "start": start,
            "end": end,
            "opening": opening,
            "closing": opening + movement,
            "page": page,
            "query": query.urlencode(),
            "change_url": reverse("admin:ledger_account_change", args=[account.pk]),
        }
        return TemplateResponse(request, "admin/ledger/account/statement.html", context)

    @action(description=_("Gross profit"), url_path="gross-profit", permissions=["view"], icon="monitoring")
    def gross_profit(self, request):
        form, start, end = self._date_range(request)
        by_day = gross_profit_by_day(start, end)
        by_product = gross_profit_by_product(start, end)
        download = request.GET.get("download")
        if download == "day":
            return _profit_csv(by_day, "day", f"gross-profit-by-day-{start}-{end}.csv")
        if download == "product":
            return _profit_csv(by_product, "product", f"gross-profit-by-product-{start}-{end}.csv")
        query = request.GET.copy()
        query.pop("download", None)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Gross profit"),
            "opts": self.model._meta,
            "form": form,
            "start": start,
            "end": end,
            "by_day": by_day,
            "by_product": by_product,
            "totals": _totals(by_day),
            "query": query.urlencode(),
        }
        return TemplateResponse(request, "admin/ledger/account/gross_profit.html", context)


class EntryInline(AppendOnlyMixin, TabularInline):
    model = Entry
    fields = ["account", "amount", "order_id", "product_id", "variant_id", "created"]
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Transaction)
class TransactionAdmin(AppendOnlyMixin, ModelAdmin):
    list_display = ["created", "kind", "reference", "memo", "amount"]
    list_filter = ["kind", "created"]
    search_fields = ["reference", "idempotency_key", "memo"]
    fields = ["kind", "reference", "memo", "idempotency_key", "created"]
    readonly_fields = fields
    inlines = [EntryInline]

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        # Each visible transaction's size (its debits) in one grouped query over this page only.
        rows = list(changelist.result_list)
        debits = dict(
            Entry.objects.filter(transaction__in=rows, amount__gt=0)
            .values("transaction_id")
            .annotate(total=Sum("amount"))
            .values_list("transaction_id", "total")
        )
        for txn in rows:
            txn.debits = debits.get(txn.pk, ZERO)
        return changelist

    @display(description=_("Amount"))
    def amount(self, obj: Transaction):
        return getattr(obj, "debits", None)
