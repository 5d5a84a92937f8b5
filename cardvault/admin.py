"""Code vault admin: import batches and the import wizard, codes (never listed in plaintext), exports,
one-off reveals and the reveal log.

Every plaintext code this admin shows or exports goes through ``cards_reveal``, which logs one
``CardReveal`` per code. Between the import preview and its confirmation the codes travel back in the
form (a hidden field), never in the session or a table. Pages and files with plaintext codes are not
cached: every admin view is wrapped in ``never_cache`` by ``AdminSite.admin_view``.
"""

from __future__ import annotations

import io
from datetime import datetime, time, timedelta

import tablib
from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Q
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin
from unfold.contrib.filters.admin import RelatedDropdownFilter, TextFilter
from unfold.decorators import action, display
from unfold.widgets import (
    INPUT_CLASSES,
    UnfoldAdminDecimalFieldWidget,
    UnfoldAdminFileFieldWidget,
    UnfoldAdminIntegerFieldWidget,
    UnfoldAdminSelectWidget,
    UnfoldAdminTextareaWidget,
    UnfoldAdminTextInputWidget,
    UnfoldBooleanSwitchWidget,
)

from cardvault.crypto import code_digest
from cardvault.models import Card, CardReveal, ImportBatch
from cardvault.services import (
    ParsedCodes,
    cards_reveal,
    cards_void,
    codes_parse_text,
    codes_parse_upload,
    import_commit,
    import_preview,
)
from catalog.models import Product, Variant
from core.errors import DomainError
from core.http import client_ip

EXPORT_COLUMNS = ["code", "secret", "variant_sku", "batch", "status", "created"]
EXPORT_CHUNK = 2000
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
UPLOAD_SOURCES = {".txt": ImportBatch.Source.TXT, ".csv": ImportBatch.Source.CSV, ".xlsx": ImportBatch.Source.XLSX}
FORM_SOURCES = [ImportBatch.Source.PASTE, *UPLOAD_SOURCES.values()]


class VariantFilter(RelatedDropdownFilter):
    """Variants by product and name, loaded in one query (their labels name the product)."""

    def field_choices(self, field, request, model_admin):
        variants = Variant.objects.select_related("product").order_by("product__name", "name")
        return [(variant.pk, str(variant)) for variant in variants]


class BatchNumberFilter(TextFilter):
    """A batch number typed in: shops accumulate more batches than a dropdown can hold."""

    title = _("batch number")
    parameter_name = "batch"

    def queryset(self, request, queryset):
        value = (self.value() or "").strip().lstrip("#")
        return queryset.filter(batch_id=int(value)) if value.isdigit() and len(value) < 19 else queryset


class RefundedAfterDeliveryFilter(admin.SimpleListFilter):
    title = _("refunded after delivery")
    parameter_name = "refunded"

    def lookups(self, request, model_admin):
        return [("yes", _("Delivered, then the order was refunded"))]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(assignments__refunded_at__isnull=False).distinct()
        return queryset


class DateInput(forms.DateInput):
    input_type = "date"

    def __init__(self):
        super().__init__(attrs={"class": " ".join(INPUT_CLASSES)}, format="%Y-%m-%d")


# --- Import wizard ----------------------------------------------------------------------------------


def _automatic_variants():
    return Variant.objects.filter(product__delivery_mode=Product.DeliveryMode.AUTOMATIC).select_related("product")


class ImportSettingsForm(forms.Form):
    """What every code of the batch shares: the variant, the unit cost, reuse and a note."""

    variant = forms.ModelChoiceField(label=_("Variant"), queryset=_automatic_variants(), widget=UnfoldAdminSelectWidget)
    unit_cost = forms.DecimalField(
        label=_("Unit cost"), min_value=0, max_digits=18, decimal_places=2, widget=UnfoldAdminDecimalFieldWidget
    )
    reusable = forms.BooleanField(
        label=_("Reusable codes"),
        required=False,
        widget=UnfoldBooleanSwitchWidget,
        help_text=_("One code serves many buyers (e.g. a shared account), up to 'uses per code'."),
    )
    max_uses = forms.IntegerField(
        label=_("Uses per code"),
        required=False,
        min_value=1,
        widget=UnfoldAdminIntegerFieldWidget,
        help_text=_("For reusable codes; empty = unlimited."),
    )
    note = forms.CharField(label=_("Note"), required=False, max_length=255, widget=UnfoldAdminTextInputWidget)

    def clean(self):
        data = super().clean()
        if not data.get("reusable"):
            data["max_uses"] = None
        return data


class ImportForm(ImportSettingsForm):
    """Step 1: the settings and the codes, pasted or uploaded."""

    text = forms.CharField(
        label=_("Paste codes"),
        required=False,
        strip=False,
        widget=UnfoldAdminTextareaWidget(attrs={"rows": 10, "spellcheck": "false", "autocomplete": "off"}),
        help_text=_("One code per line; 'code|secret' for codes with a PIN or password."),
    )
    file = forms.FileField(
        label=_("…or upload a file"),
        required=False,
        widget=UnfoldAdminFileFieldWidget,
        help_text=_(".txt (one per line), .csv or .xlsx (first column code, optional second column secret)."),
    )

    def clean_file(self):
        upload = self.cleaned_data.get("file")
        if upload is None:
            return None
        if self.upload_source(upload.name) is None:
            raise forms.ValidationError(_("Upload a .txt, .csv or .xlsx file."))
        if upload.size > MAX_UPLOAD_BYTES:
            raise forms.ValidationError(_("The file is larger than 50 MB; split it into several imports."))
        return upload

    def clean(self):
        data = super().clean()
        has_text, has_file = bool((data.get("text") or "").strip()), bool(data.get("file"))
        if has_text == has_file and not self.errors.get("file"):
            raise forms.ValidationError(_("Paste the codes or upload a file (one of the two)."))
        return data

    @staticmethod
    def upload_source(name: str) -> str | None:
        lowered = name.lower()
        return next((source for ext, source in UPLOAD_SOURCES.items() if lowered.endswith(ext)), None)

    def parse(self) -> tuple[ParsedCodes, str]:
        """The parsed codes and the batch source; raises ``ImportInvalid`` for unreadable files."""
        upload = self.cleaned_data.get("file")
        if upload:
            return codes_parse_upload(upload.name, upload.read()), self.upload_source(upload.name)
        return codes_parse_text(self.cleaned_data["text"]), ImportBatch.Source.PASTE


class ImportConfirmForm(ImportSettingsForm):
    """Step 3: the settings and codes again, as posted back from the preview page."""

    source = forms.ChoiceField(choices=[(s, s) for s in FORM_SOURCES], widget=forms.HiddenInput)
    codes = forms.CharField(strip=False, widget=forms.Textarea(attrs={"hidden": True}))
    invalid = forms.IntegerField(min_value=0, widget=forms.HiddenInput)
    input_duplicates = forms.IntegerField(min_value=0, widget=forms.HiddenInput)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in ImportSettingsForm.base_fields:
            self.fields[name].widget = forms.HiddenInput()

    def parsed(self) -> ParsedCodes:
        parsed = codes_parse_text(self.cleaned_data["codes"])
        # The preview dropped invalid lines and repeats; keep their counts for the batch statistics.
        parsed.invalid.extend([(0, "rejected in the preview")] * self.cleaned_data["invalid"])
        parsed.duplicates_in_input += self.cleaned_data["input_duplicates"]
        return parsed


def codes_as_lines(parsed: ParsedCodes) -> tuple[str, ParsedCodes]:
    """``code|secret`` lines to post back, and ``parsed`` without entries that cannot make that trip.

    A file cell may hold a code with a bar or a line break, which the line format would silently
    split; such rows are reported as invalid instead of being imported wrong.
    """
    kept, lines = ParsedCodes(invalid=list(parsed.invalid), duplicates_in_input=parsed.duplicates_in_input), []
    for code, secret in parsed.codes:
        line = f"{code}|{secret}" if secret else code
        if "|" in code or len(line.splitlines()) != 1:
            kept.invalid.append((0, "contains '|' or a line break inside the code"))
            continue
        kept.codes.append((code, secret))
        lines.append(line)
    return "\n".join(lines), kept


@admin.register(ImportBatch)
class ImportBatchAdmin(ModelAdmin):
    list_display = ["id", "variant", "source", "unit_cost", "lines_total", "imported", "duplicates", "invalid"]
    list_display += ["available", "sold", "total_cost", "created_by", "created"]
    list_display_links = ["id", "variant"]
    list_filter = ["source", ("variant", VariantFilter), "created"]
    list_filter_submit = True
    search_fields = ["=id", "note", "variant__sku"]
    list_select_related = ["variant__product", "created_by"]
    fields = ["variant", "source", "unit_cost", "reusable", "max_uses", "note", "created_by", "created"]
    fields += ["lines_total", "imported", "duplicates", "invalid"]
    readonly_fields = fields
    actions_list = ["import_codes"]

    def has_add_permission(self, request):
        return False  # batches are made by the import wizard

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # codes, sales and the ledger refer to batches

    def has_import_permission(self, request, obj=None):
        return request.user.has_perm("cardvault.add_importbatch") and request.user.has_perm("cardvault.add_card")

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        # Per-batch stock of the visible page in one grouped query (a join over every code would
        # have to count the whole vault before paginating).
        rows = list(changelist.result_list)
        counts = {
            row["batch_id"]: row
            for row in Card.objects.filter(batch_id__in=[b.pk for b in rows])
            .values("batch_id")
            .annotate(
                available=Count("id", filter=Q(status=Card.Status.AVAILABLE)),
                sold=Count("id", filter=Q(status=Card.Status.SOLD)),
            )
        }
        for batch in rows:
            batch.stats = counts.get(batch.pk, {"available": 0, "sold": 0})
        return changelist

    @display(description=_("Available"))
    def available(self, obj: ImportBatch):
        count = getattr(obj, "stats", {}).get("available", 0)
        codes = reverse("admin:cardvault_card_changelist")
        return format_html('<a href="{}?batch={}&status__exact=available">{}</a>', codes, obj.pk, count)

    @display(description=_("Sold"))
    def sold(self, obj: ImportBatch) -> int:
        return getattr(obj, "stats", {}).get("sold", 0)

    @display(description=_("Total cost"))
    def total_cost(self, obj: ImportBatch):
        return obj.unit_cost * obj.imported

    @action(description=_("Import codes"), url_path="import", permissions=["import"], icon="upload")
    def import_codes(self, request):
        step = request.POST.get("step") if request.method == "POST" else None
        if step == "confirm":
            confirm = ImportConfirmForm(request.POST)
            if confirm.is_valid():
                return self._import_commit(request, confirm)
            messages.error(request, _("The import could not be confirmed; please start again."))
            form = ImportForm(initial={"variant": request.POST.get("variant")})
        elif step == "preview":
            form = ImportForm(request.POST, request.FILES)
            if form.is_valid():
                try:
                    parsed, source = form.parse()
                except DomainError as exc:
                    form.add_error("file", exc.message)
                else:
                    return self._import_preview(request, form, parsed, source)
        else:
            form = ImportForm(initial={"variant": request.GET.get("variant")})
        return self._render(request, "admin/cardvault/importbatch/import_codes.html", {"form": form})

    def _import_preview(self, request, form: ImportForm, parsed: ParsedCodes, source: str):
        lines, parsed = codes_as_lines(parsed)
        preview = import_preview(parsed)
        settings = {name: form.cleaned_data[name] for name in ImportSettingsForm.base_fields}
        confirm = ImportConfirmForm(
            initial={
                **settings,
                "variant": settings["variant"].pk,
                "source": source,
                "codes": lines,
                "invalid": len(parsed.invalid),
                "input_duplicates": parsed.duplicates_in_input,
            }
        )
        context = {
            "preview": preview,
            "confirm_form": confirm,
            "settings": settings,
            "source": source,
            "new_cost": settings["unit_cost"] * preview.new,
        }
        return self._render(request, "admin/cardvault/importbatch/import_preview.html", context)

    def _import_commit(self, request, confirm: ImportConfirmForm):
        data = confirm.cleaned_data
        try:
            batch = import_commit(
                variant=data["variant"],
                parsed=confirm.parsed(),
                unit_cost=data["unit_cost"],
                source=data["source"],
                reusable=data["reusable"],
                max_uses=data["max_uses"],
                note=data["note"],
                actor=request.user,
            )
        except DomainError as exc:
            messages.error(request, exc.message)
            return HttpResponseRedirect(reverse("admin:cardvault_importbatch_import_codes"))
        messages.success(
            request,
            _(
                "Batch #%(batch)s: %(imported)d code(s) imported, %(duplicates)d duplicate(s) skipped, "
                "%(invalid)d invalid line(s)."
            )
            % {"batch": batch.pk, "imported": batch.imported, "duplicates": batch.duplicates, "invalid": batch.invalid},
        )
        return HttpResponseRedirect(reverse("admin:cardvault_importbatch_changelist"))

    def _render(self, request, template: str, context: dict) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": _("Import codes"),
            "opts": self.model._meta,
            **context,
        }
        return TemplateResponse(request, template, context)


# --- Codes ------------------------------------------------------------------------------------------


def cards_export_rows(request, queryset) -> list[list]:
    """Decrypt the codes of ``queryset`` for an export, one reveal logged per code (channel export)."""
    rows: list[list] = []
    cards = queryset.select_related("variant", "batch").order_by("pk")
    last_pk = 0
    while True:
        chunk = list(cards.filter(pk__gt=last_pk)[:EXPORT_CHUNK])
        if not chunk:
            return rows
        revealed = cards_reveal(
            cards=chunk,
            channel=CardReveal.Channel.EXPORT,
            user=request.user,
            ip=client_ip(request),
            user_agent=request.headers.get("user-agent", ""),
        )
        for card, code in zip(chunk, revealed, strict=True):
            rows.append(
                [
                    code.code,
                    code.secret,
                    card.variant.sku,
                    card.batch_id,
                    card.status,
                    timezone.localtime(card.created).isoformat(),
                ]
            )
        last_pk = chunk[-1].pk


def export_response(rows: list[list], fmt: str) -> HttpResponse:
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M%S")
    if fmt == "xlsx":
        content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        body = _xlsx(rows)
    else:
        content_type = "text/csv; charset=utf-8"
        body = tablib.Dataset(*rows, headers=EXPORT_COLUMNS).export("csv")
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="codes-{stamp}.{fmt}"'
    return response


def _xlsx(rows: list[list]) -> bytes:
    """Written with openpyxl directly: every code cell is typed as text, so a code that starts with '='
    is neither turned into a formula (tablib/openpyxl's default) nor altered."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("codes")
    sheet.append(EXPORT_COLUMNS)
    for row in rows:
        cells = []
        for value in row:
            cell = WriteOnlyCell(sheet, value=value)
            if isinstance(value, str):
                cell.data_type = "s"
            cells.append(cell)
        sheet.append(cells)
    stream = io.BytesIO()
    workbook.save(stream)
    return stream.getvalue()


class ExportForm(forms.Form):
    status = forms.ChoiceField(
        label=_("Status"),
        required=False,
        choices=[("", _("Any")), *Card.Status.choices],
        widget=UnfoldAdminSelectWidget,
    )
    variant = forms.ModelChoiceField(
        label=_("Variant"),
        required=False,
        queryset=Variant.objects.select_related("product"),
        widget=UnfoldAdminSelectWidget,
    )
    batch = forms.IntegerField(
        label=_("Batch number"), required=False, min_value=1, widget=UnfoldAdminIntegerFieldWidget
    )
    date_from = forms.DateField(label=_("Imported from"), required=False, widget=DateInput())
    date_to = forms.DateField(label=_("Imported until (inclusive)"), required=False, widget=DateInput())
    format = forms.ChoiceField(
        label=_("Format"), choices=[("csv", "CSV"), ("xlsx", "XLSX")], widget=UnfoldAdminSelectWidget
    )

    def filter(self, queryset):
        data = self.cleaned_data
        if data.get("status"):
            queryset = queryset.filter(status=data["status"])
        if data.get("variant"):
            queryset = queryset.filter(variant=data["variant"])
        if data.get("batch"):
            queryset = queryset.filter(batch_id=data["batch"])
        zone = timezone.get_current_timezone()
        if data.get("date_from"):
            queryset = queryset.filter(created__gte=datetime.combine(data["date_from"], time.min, tzinfo=zone))
        if data.get("date_to"):
            end = datetime.combine(data["date_to"] + timedelta(days=1), time.min, tzinfo=zone)
            queryset = queryset.filter(created__lt=end)
        return queryset


@admin.register(Card)
class CardAdmin(ModelAdmin):
    list_display = ["id", "variant", "batch_link", "status_display", "reusable", "uses", "reserved_until", "created"]
    list_filter = ["status", ("variant", VariantFilter), BatchNumberFilter, RefundedAfterDeliveryFilter, "reusable"]
    list_filter += ["created"]
    list_filter_submit = True
    list_select_related = ["variant__product"]
    search_fields = ["=id"]
    search_help_text = _("Paste a whole code to find it in the vault (exact match), or a code's number.")
    # The ciphertext and the digest are never shown: there is nothing to read in them.
    fields = ["variant", "batch", "status", "reusable", "max_uses", "use_count", "reserved_until", "reserved_for"]
    fields += ["key_version", "created", "sold_at", "delivered_on"]
    readonly_fields = fields
    actions = ["void_available", "export_csv", "export_xlsx"]
    actions_list = ["export_filtered"]
    actions_detail = ["reveal"]

    def has_add_permission(self, request):
        return False  # codes come in through the import wizard

    def has_change_permission(self, request, obj=None):
        # Bulk actions (void) need the model permission; a single code is never edited by hand.
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request, obj=None):
        return False  # sold codes are evidence; unsold ones are voided

    def has_reveal_permission(self, request, obj=None):
        return request.user.has_perm("cardvault.change_card")

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        # A pasted code is found by its HMAC digest (nothing is decrypted); digits may also be an id.
        match = Q(digest=code_digest(term))
        if term.isdigit() and len(term) < 19:
            match |= Q(pk=int(term))
        return queryset.filter(match), False

    @display(description=_("Batch"), ordering="batch_id")
    def batch_link(self, obj: Card):
        changelist = reverse("admin:cardvault_card_changelist")
        return format_html('<a href="{}?batch={}">#{}</a>', changelist, obj.batch_id, obj.batch_id)

    @display(
        description=_("Status"),
        ordering="status",
        label={
            Card.Status.AVAILABLE: "success",
            Card.Status.RESERVED: "info",
            Card.Status.SOLD: "warning",
            Card.Status.VOID: "danger",
        },
    )
    def status_display(self, obj: Card):
        return obj.status, obj.get_status_display()

    @display(description=_("Delivered on"))
    def delivered_on(self, obj: Card):
        """The orders this code went to, flagged when the order was refunded after delivery."""
        items = [
            (
                reverse("admin:orders_order_change", args=[a.order_line.order_id]),
                a.order_line.order.number,
                _(" — refunded after delivery %(when)s") % {"when": a.refunded_at.strftime("%Y-%m-%d %H:%M")}
                if a.refunded_at
                else "",
            )
            for a in obj.assignments.select_related("order_line__order").order_by("pk")
        ]
        return format_html_join(mark_safe("<br>"), '<a href="{}">{}</a>{}', items) if items else "—"

    @display(description=_("Uses"))
    def uses(self, obj: Card) -> str:
        return f"{obj.use_count}/{obj.max_uses if obj.max_uses is not None else '∞'}"

    @action(description=_("Void selected available codes"), permissions=["change"])
    def void_available(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        selected = len(ids)
        # Only available codes are voided (a code reserved or sold meanwhile is left alone); their
        # cost is written off inventory in the ledger.
        count = cards_void(card_ids=ids, actor=request.user, reason=f"voided in admin by {request.user}")
        skipped = selected - count
        self.message_user(request, _("%(count)d code(s) voided.") % {"count": count}, messages.SUCCESS)
        if skipped > 0:
            self.message_user(
                request,
                _("%(count)d selected code(s) were not available and were left as they are.") % {"count": skipped},
                messages.WARNING,
            )

    @action(description=_("Export to CSV (logged)"), permissions=["reveal"])
    def export_csv(self, request, queryset):
        return export_response(cards_export_rows(request, queryset), "csv")

    @action(description=_("Export to XLSX (logged)"), permissions=["reveal"])
    def export_xlsx(self, request, queryset):
        return export_response(cards_export_rows(request, queryset), "xlsx")

    @action(description=_("Export codes"), url_path="export", permissions=["reveal"], icon="download")
    def export_filtered(self, request):
        if request.method == "POST":
            form = ExportForm(request.POST)
            if form.is_valid():
                queryset = form.filter(Card.objects.all())
                if not queryset.exists():
                    messages.warning(request, _("No codes match these filters."))
                else:
                    return export_response(cards_export_rows(request, queryset), form.cleaned_data["format"])
        else:
            form = ExportForm(initial={key: request.GET.get(key) for key in ("status", "variant", "batch")})
        context = {
            **self.admin_site.each_context(request),
            "title": _("Export codes"),
            "opts": self.model._meta,
            "form": form,
        }
        return TemplateResponse(request, "admin/cardvault/card/export.html", context)

    @action(description=_("Reveal code"), url_path="reveal", permissions=["reveal"], icon="visibility")
    def reveal(self, request, object_id):
        card = self.get_object(request, object_id)
        if card is None:
            raise Http404
        revealed = None
        if request.method == "POST":
            revealed = cards_reveal(
                cards=[card],
                channel=CardReveal.Channel.ADMIN,
                user=request.user,
                ip=client_ip(request),
                user_agent=request.headers.get("user-agent", ""),
            )[0]
        context = {
            **self.admin_site.each_context(request),
            "title": _("Reveal code #%(id)s") % {"id": card.pk},
            "opts": self.model._meta,
            "card": card,
            "revealed": revealed,
            "change_url": reverse("admin:cardvault_card_change", args=[card.pk]),
        }
        return TemplateResponse(request, "admin/cardvault/card/reveal.html", context)


@admin.register(CardReveal)
class CardRevealAdmin(ModelAdmin):
    list_display = ["created", "card", "channel", "user", "order_number", "ip"]
    list_filter = ["channel", "created"]
    search_fields = ["order_number", "=card__id", "user__email"]
    list_select_related = ["user", "card"]
    readonly_fields = ["card", "channel", "user", "order_number", "ip", "user_agent", "created"]
    fields = readonly_fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # the reveal log is an audit trail
