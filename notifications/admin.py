"""Notifications admin: staff override the e-mail texts per language; the send log is read-only."""

from django import forms
from django.contrib import admin
from django.template import Template, TemplateSyntaxError
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin
from unfold.decorators import display

from core.admin_site import ReadOnlyAdminMixin
from notifications.models import EmailLog, MessageTemplate

CONTEXT_HELP = _(
    "Django template syntax. Variables by message — "
    "order_delivered: {{ order }} (number, email, total, currency, …); {{ lines }}, one item per order line, "
    "each with .line (the order line: product_name, variant_name, quantity), .codes (a list of (code, secret) "
    "pairs) and .notes (staff notes), e.g. {% for item in lines %}{{ item.line.product_name }}: "
    "{% for code, secret in item.codes %}{{ code }} {{ secret }}{% endfor %}{% endfor %}; "
    "{{ shop_name }}; {{ order_url }}. "
    "staff_order_alert: {{ order }}, {{ reason }} (manual_fulfilment or awaiting_stock), {{ admin_url }}. "
    "Without an active template here, the built-in texts are used."
)


class MessageTemplateForm(forms.ModelForm):
    class Meta:
        model = MessageTemplate
        fields = ["key", "language", "subject", "body_text", "body_html", "is_active"]
        help_texts = {"body_text": CONTEXT_HELP}

    def _compiled(self, name: str) -> str:
        value = self.cleaned_data.get(name, "")
        try:
            Template(value)
        except TemplateSyntaxError as exc:
            raise forms.ValidationError(_("Template error: %(error)s") % {"error": exc}) from exc
        return value

    # A broken template would only show up when an e-mail fails to render: refuse it here instead.
    def clean_subject(self):
        return self._compiled("subject")

    def clean_body_text(self):
        return self._compiled("body_text")

    def clean_body_html(self):
        return self._compiled("body_html")


@admin.register(MessageTemplate)
class MessageTemplateAdmin(ModelAdmin):
    form = MessageTemplateForm
    list_display = ["key", "language", "subject", "is_active", "updated"]
    list_filter = ["key", "language", "is_active"]
    search_fields = ["key", "subject"]


@admin.register(EmailLog)
class EmailLogAdmin(ReadOnlyAdminMixin, ModelAdmin):
    list_display = ["created", "key", "to", "subject", "reference", "ok_display"]
    list_filter = ["ok", "key", "created"]
    search_fields = ["to", "reference", "subject"]
    fields = ["created", "key", "to", "subject", "reference", "ok", "error"]
    readonly_fields = fields

    @display(description=_("Sent"), boolean=True, ordering="ok")
    def ok_display(self, obj: EmailLog) -> bool:
        return obj.ok
