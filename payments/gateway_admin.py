"""Shop admin for configurable gateways: the recipe as a form of clear fields, presets, and a Test page.

The row is an ordinary ``PaymentChannel`` (provider ``gw-<slug>``, recipe in ``config``, key encrypted);
``ConfiguredGateway`` is its proxy so the admin can offer this form instead of raw settings.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.http import Http404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin
from unfold.decorators import action, display
from unfold.widgets import (
    UnfoldAdminPasswordWidget,
    UnfoldAdminSelectWidget,
    UnfoldAdminTextareaWidget,
    UnfoldAdminTextInputWidget,
)

from payments.channels import FEE_AND_LIMIT_FIELDS
from payments.models import ConfiguredGateway, PaymentChannel
from payments.providers import PROVIDERS
from payments.providers.gateway import configured_gateway_save, gateway_trial
from payments.providers.gateway_recipe import (
    EMPTY_RECIPE,
    PREFIX,
    PRESETS,
    SLUG_RE,
    gateway_code,
    recipe_errors,
    recipe_normalize,
)

_FORMATS = [
    ("redirect", _("Redirect the customer with signed parameters (like epay's submit.php)")),
    ("form", _("Server request, form body (application/x-www-form-urlencoded)")),
    ("json", _("Server request, JSON body")),
    ("query", _("Server request, parameters in the query string")),
]
_METHODS = [("POST", "POST"), ("GET", "GET")]
_ALGORITHMS = [("md5", "MD5"), ("sha256", "SHA-256"), ("hmac_sha256", "HMAC-SHA256")]
_CASES = [("lower", _("lowercase hex")), ("upper", _("UPPERCASE hex"))]
_SOURCES = [
    ("sorted", _("Sorted non-empty parameters: a=1&b=2 (signature fields left out)")),
    ("template", _("A template string, e.g. {out_trade_no}|{money}|{key}")),
]
_KEY_PLACEMENTS = [
    ("append", _("Appended directly: …&b=2KEY")),
    ("append_param", _("Appended as a parameter: …&b=2&key=KEY")),
    ("hmac", _("As the HMAC key (HMAC-SHA256 only)")),
    ("none", _("Nowhere else: the template contains {key}")),
]
_UNITS = [("major", _("Major unit (15.00)")), ("cents", _("Smallest unit / cents (1500)"))]
_OUR_FIELDS = [
    ("out_trade_no", _("Our order number (payment token)"), _("Unique per payment attempt; required.")),
    ("amount", _("Amount"), _("Major unit with two decimals, e.g. 15.00.")),
    ("amount_cents", _("Amount in cents"), _("Smallest currency unit, e.g. 1500.")),
    ("currency", _("Currency"), _("ISO code, e.g. CNY.")),
    ("subject", _("Subject / product name"), _("“Order <number>”.")),
    ("notify_url", _("Notification URL"), _("/payments/callback/gw-<code>/ on this shop's domain.")),
    ("return_url", _("Return URL"), _("The order page the customer comes back to.")),
    ("client_ip", _("Customer IP"), ""),
    ("timestamp", _("Timestamp"), _("Unix seconds.")),
    ("nonce", _("Nonce"), _("32 random hex characters.")),
]


def _text(label, help_text="", required=False, placeholder=""):
    attrs = {"placeholder": placeholder} if placeholder else {}
    return forms.CharField(
        label=label,
        help_text=help_text,
        required=required,
        strip=True,
        widget=UnfoldAdminTextInputWidget(attrs=attrs),
    )


def _choice(label, choices, help_text=""):
    return forms.ChoiceField(label=label, choices=choices, help_text=help_text, widget=UnfoldAdminSelectWidget)


def _lines(label, help_text):
    return forms.CharField(
        label=label, help_text=help_text, required=False, widget=UnfoldAdminTextareaWidget(attrs={"rows": 3})
    )


# form field → (section, key) in the recipe; the create field mapping is handled apart.
_PLAIN = {
    "create_url": ("create", "url"),
    "create_method": ("create", "method"),
    "create_format": ("create", "format"),
    "response_pay_url": ("response", "pay_url"),
    "response_qr_code": ("response", "qr_code"),
    "response_trade_no": ("response", "trade_no"),
    "response_success_path": ("response", "success_path"),
    "response_success_value": ("response", "success_value"),
    **{f"callback_{key}": ("callback", key) for key in EMPTY_RECIPE["callback"]},
    **{f"signature_{key}": ("signature", key) for key in EMPTY_RECIPE["signature"] if key != "exclude"},
    **{f"query_{key}": ("query", key) for key in EMPTY_RECIPE["query"] if key not in ("fields", "constants", "signed")},
}
_ERROR_FIELDS = {
    "create.fields": "map_out_trade_no",
    "create.constants": "create_constants",
    "signature.exclude": "signature_exclude",
    "query.fields": "query_map_out_trade_no",
    "query.constants": "query_constants",
    "secret": "secret",
}
_QUERY_FIELDS = [
    ("out_trade_no", _("Our order number (payment token)")),
    ("trade_no", _("The gateway's trade number (from the notification)")),
    ("timestamp", _("Timestamp")),
    ("nonce", _("Nonce")),
]
_QUERY_REQUEST = ("query_url", "query_method", "query_format", "query_key_param")
_QUERY_FORMATS = [
    ("query", _("Parameters in the query string (GET)")),
    ("form", _("Form body (POST)")),
    ("json", _("JSON body (POST)")),
]


class ConfiguredGatewayForm(forms.ModelForm):
    slug = forms.SlugField(
        label=_("Code"),
        max_length=29,
        help_text=_(
            "Lowercase letters, digits and dashes. The gateway's notifications go to "
            "/payments/callback/gw-<code>/ on this shop's domain. Cannot be changed later."
        ),
        widget=UnfoldAdminTextInputWidget,
    )
    preset = forms.ChoiceField(
        label=_("Start from a preset"),
        required=False,
        choices=[("", "—"), *[(code, label) for code, (label, _recipe) in PRESETS.items()]],
        help_text=_("Fills in the form below; change what differs for your gateway."),
        widget=UnfoldAdminSelectWidget(attrs={"onchange": "window.location.search = '?preset=' + this.value"}),
    )
    create_url = _text(_("Create-payment URL"), _("Where payments are created (or the customer is sent)."), True)
    create_method = _choice(_("Method"), _METHODS)
    create_format = _choice(_("How parameters are sent"), _FORMATS)
    create_constants = _lines(
        _("Constant parameters"), _("One name=value per line, sent with every request, e.g. pid=1001.")
    )
    response_pay_url = _text(_("Pay URL path"), _("Dotted path in the JSON answer, e.g. data.pay_url."))
    response_qr_code = _text(_("QR code path"), _("Used when the answer has no pay URL (must be a web address)."))
    response_trade_no = _text(_("Gateway trade number path"), _("e.g. data.trade_no (shown in the test)."))
    response_success_path = _text(_("Success field path"), _("e.g. code"))
    response_success_value = _text(_("Success value"), _("e.g. 0 or SUCCESS"))
    callback_order = _text(_("Order number field"), _("Carries our order number back."), True)
    callback_amount = _text(_("Amount field"), required=True)
    callback_amount_unit = _choice(_("Amount unit"), _UNITS)
    callback_currency = _text(_("Currency field"), _("Optional: without one, the shop's currency is assumed."))
    callback_status = _text(_("Status field"), required=True)
    callback_status_success = _text(_("Status value meaning paid"), _("e.g. TRADE_SUCCESS"), True)
    callback_trade_no = _text(_("Gateway trade number field"), required=True)
    callback_merchant = _text(_("Merchant field"), _("Optional, with the value below."))
    callback_merchant_value = _text(_("Our merchant id"), _("A notification naming another merchant is refused."))
    callback_reply_accepted = _text(_("Reply when accepted"), _("e.g. success"), True)
    callback_reply_rejected = _text(_("Reply when refused"), _("e.g. fail (the gateway retries)"), True)
    signature_algorithm = _choice(_("Algorithm"), _ALGORITHMS)
    signature_case = _choice(_("Hex case"), _CASES)
    signature_source = _choice(_("What is signed"), _SOURCES)
    signature_template = _text(
        _("Template"), _("Only for a template: {name} is a parameter's value, {key} the key."), placeholder=""
    )
    signature_key_placement = _choice(_("Where the key goes"), _KEY_PLACEMENTS)
    signature_key_param = _text(_("Key parameter name"), _("For “appended as a parameter”, e.g. key."))
    signature_field = _text(_("Signature parameter"), _("e.g. sign"))
    signature_header = _text(_("Signature header"), _("Instead of a parameter, e.g. X-Signature (server requests)."))
    signature_sign_type_field = _text(_("Sign type field"), _("Optional constant, not signed, e.g. sign_type."))
    signature_sign_type_value = _text(_("Sign type value"), _("e.g. MD5"))
    signature_exclude = _text(_("Also leave out of the signature"), _("Comma-separated parameter names."))
    query_url = _text(
        _("Order query URL"),
        _(
            "Optional. When set, a notification is applied only after this query confirms the order paid "
            "with the same amount (like epay's api.php?act=order)."
        ),
    )
    query_method = _choice(_("Query method"), [("GET", "GET"), ("POST", "POST")])
    query_format = _choice(_("How query parameters are sent"), _QUERY_FORMATS)
    query_constants = _lines(_("Constant query parameters"), _("One name=value per line, e.g. act=order."))
    query_signed = forms.BooleanField(
        label=_("Sign the query"), required=False, help_text=_("Signed like the create request (section below).")
    )
    query_key_param = _text(
        _("Send the key as parameter"), _("Some gateways take the key itself, e.g. key (epay). Empty: not sent.")
    )
    query_success_path = _text(_("Query success field path"), _("Optional, e.g. code"))
    query_success_value = _text(_("Query success value"), _("e.g. 1"))
    query_order_path = _text(_("Order number path in the answer"), _("Optional: must be our order number."))
    query_status_path = _text(_("Status path in the answer"), _("e.g. status"))
    query_status_paid = _text(_("Status value meaning paid"), _("e.g. 1"))
    query_amount_path = _text(_("Amount path in the answer"), _("e.g. money"))
    query_amount_unit = _choice(_("Answer amount unit"), _UNITS)
    secret = forms.CharField(
        label=_("Key / secret"),
        required=False,
        strip=True,
        widget=UnfoldAdminPasswordWidget(render_value=False, attrs={"autocomplete": "off"}),
        help_text=_("The merchant key. Stored encrypted and never shown again. Leave empty to keep the stored key."),
    )

    class Meta:
        model = ConfiguredGateway
        fields = ["name", "is_enabled", "sort_order", *FEE_AND_LIMIT_FIELDS]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            del self.fields["slug"], self.fields["preset"]
            self.initial.update(recipe_initial(recipe_normalize(self.instance.config)))
        else:
            self.fields["secret"].required = True
        self.recipe: dict = {}

    def clean_slug(self):
        slug = self.cleaned_data["slug"].strip().lower()
        if not SLUG_RE.match(slug):
            raise forms.ValidationError(_("Use lowercase letters, digits and dashes (not at either end)."))
        if PaymentChannel.objects.filter(provider=gateway_code(slug)).exists():
            raise forms.ValidationError(_("A gateway with this code already exists."))
        return slug

    def clean_create_constants(self):
        return self._constants(self.cleaned_data["create_constants"])

    @staticmethod
    def _constants(text: str) -> dict:
        constants = {}
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            name, sep, value = line.partition("=")
            if not sep or not name.strip():
                raise forms.ValidationError(_("Line %(n)s is not name=value.") % {"n": number})
            constants[name.strip()] = value.strip()
        return constants

    def clean_query_constants(self):
        return self._constants(self.cleaned_data["query_constants"])

    def clean_signature_exclude(self):
        return [name.strip() for name in self.cleaned_data["signature_exclude"].split(",") if name.strip()]

    def clean(self):
        data = super().clean()
        recipe = recipe_normalize({})
        for name, (section, key) in _PLAIN.items():
            recipe[section][key] = data.get(name, "")
        recipe["create"]["fields"] = {ours: data[f"map_{ours}"] for ours, *_ in _OUR_FIELDS if data.get(f"map_{ours}")}
        recipe["create"]["constants"] = data.get("create_constants") or {}
        recipe["signature"]["exclude"] = data.get("signature_exclude") or []
        recipe["query"]["fields"] = {
            ours: data[f"query_map_{ours}"] for ours, _label in _QUERY_FIELDS if data.get(f"query_map_{ours}")
        }
        recipe["query"]["constants"] = data.get("query_constants") or {}
        recipe["query"]["signed"] = bool(data.get("query_signed"))
        by_path = {f"{section}.{key}": name for name, (section, key) in _PLAIN.items()}
        for path, message in recipe_errors(recipe):
            name = _ERROR_FIELDS.get(path) or by_path.get(path)
            if name not in self.errors:  # a field that already failed says why once
                self.add_error(name, message)
        self.recipe = recipe
        return data


# One field per value of ours, declared on the class so the admin's fieldsets can name them.
for _ours, _label, _help in _OUR_FIELDS:
    ConfiguredGatewayForm.declared_fields[f"map_{_ours}"] = ConfiguredGatewayForm.base_fields[f"map_{_ours}"] = _text(
        _label, _help
    )
for _ours, _label in _QUERY_FIELDS:
    ConfiguredGatewayForm.declared_fields[f"query_map_{_ours}"] = ConfiguredGatewayForm.base_fields[
        f"query_map_{_ours}"
    ] = _text(_label, _("The query parameter's name; empty: not sent."))


def recipe_initial(recipe: dict) -> dict:
    """The form's initial values for a recipe."""
    initial = {name: recipe[section][key] for name, (section, key) in _PLAIN.items()}
    initial.update({f"map_{ours}": name for ours, name in recipe["create"]["fields"].items()})
    initial["create_constants"] = "\n".join(f"{k}={v}" for k, v in recipe["create"]["constants"].items())
    initial["signature_exclude"] = ", ".join(recipe["signature"]["exclude"])
    initial.update({f"query_map_{ours}": name for ours, name in recipe["query"]["fields"].items()})
    initial["query_constants"] = "\n".join(f"{k}={v}" for k, v in recipe["query"]["constants"].items())
    initial["query_signed"] = recipe["query"]["signed"] is True
    return initial


@admin.register(ConfiguredGateway)
class ConfiguredGatewayAdmin(ModelAdmin):
    form = ConfiguredGatewayForm
    list_display = ["name", "provider", "is_enabled", "sort_order", "secret_stored", "updated"]
    readonly_fields = ["provider", "secret_stored"]
    actions_detail = ["test_gateway"]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(provider__startswith=PREFIX)

    def get_fieldsets(self, request, obj=None):
        first = ["slug", "preset"] if obj is None else ["provider"]
        return [
            (None, {"fields": [*first, "name", "is_enabled", "sort_order", "secret", "secret_stored"]}),
            (_("Fee and limits"), {"fields": list(FEE_AND_LIMIT_FIELDS)}),
            (
                _("Create-payment request"),
                {"fields": ["create_url", "create_method", "create_format", "create_constants"]},
            ),
            (
                _("Our values → the gateway's parameter names (empty: not sent)"),
                {"fields": [f"map_{ours}" for ours, *_ in _OUR_FIELDS]},
            ),
            (
                _("Reading the gateway's answer (server requests only)"),
                {"fields": [name for name in _PLAIN if name.startswith("response_")]},
            ),
            (_("Reading a notification"), {"fields": [name for name in _PLAIN if name.startswith("callback_")]}),
            (
                _("Signature (requests and notifications)"),
                {"fields": [*[n for n in _PLAIN if n.startswith("signature_")], "signature_exclude"]},
            ),
            (
                _("Order query before delivery (optional)"),
                {
                    "fields": [
                        "query_url",
                        "query_method",
                        "query_format",
                        "query_constants",
                        *[f"query_map_{ours}" for ours, _label in _QUERY_FIELDS],
                        "query_signed",
                        "query_key_param",
                        *[n for n in _PLAIN if n.startswith("query_") and n not in _QUERY_REQUEST],
                    ]
                },
            ),
        ]

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        preset = PRESETS.get(request.GET.get("preset", ""))
        recipe = recipe_normalize(preset[1] if preset else {})
        return {**recipe_initial(recipe), **({"preset": request.GET["preset"]} if preset else {}), **initial}

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        configured_gateway_save(
            channel=obj,
            slug=None if change else data["slug"],
            name=data["name"],
            is_enabled=data.get("is_enabled", False),
            sort_order=data.get("sort_order") or 0,
            recipe=form.recipe,
            secret=data.get("secret", ""),
            fees_and_limits={name: data[name] for name in FEE_AND_LIMIT_FIELDS if name in data},
        )

    @display(description=_("Key"), boolean=True)
    def secret_stored(self, obj: PaymentChannel) -> bool:
        return bool(obj.secret_encrypted)

    @action(description=_("Test"), url_path="test", icon="science", permissions=["change"])
    def test_gateway(self, request, object_id):
        """Show what a sample payment would send and what the answer and a sample notification give."""
        from core.http import client_ip

        gateway = self.get_object(request, object_id)
        if gateway is None:
            raise Http404
        trial = gateway_trial(channel=gateway, client_ip=client_ip(request) or "") if request.method == "POST" else None
        context = {
            **self.admin_site.each_context(request),
            "title": _("Test %(name)s") % {"name": gateway.name},
            "opts": self.model._meta,
            "gateway": gateway,
            "trial": trial,
            "change_url": reverse("admin:payments_configuredgateway_change", args=[gateway.pk]),
        }
        return TemplateResponse(request, "admin/payments/configuredgateway/test.html", context)


def gateway_channel_redirect(channel: PaymentChannel) -> str | None:
    """Where a configured gateway's row is edited (the plain channel form would show raw settings)."""
    if channel.provider in PROVIDERS or not channel.provider.startswith(PREFIX):
        return None
    return reverse("admin:payments_configuredgateway_change", args=[channel.pk])
