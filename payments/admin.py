"""Payments admin: channels (per shop; secrets are write-only), attempts and inbound callbacks (read-only:
they are the audit trail of the gateways)."""

from decimal import Decimal

from django import forms
from django.contrib import admin
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin
from unfold.decorators import action, display
from unfold.widgets import UnfoldAdminPasswordWidget, UnfoldAdminSelectWidget

from core.admin_site import ReadOnlyAdminMixin
from payments import gateway_admin  # noqa: F401 (registers the configurable gateways' admin)
from payments.channels import FEE_AND_LIMIT_FIELDS, payment_channel_save
from payments.duplicates import duplicate_payment_refund, duplicate_payments_open, duplicate_payments_open_filter
from payments.manual import confirmation_password_set
from payments.models import ManualConfirmation, PaymentAttempt, PaymentCallback, PaymentChannel, PaymentSettings
from payments.providers import PROVIDERS


class PaymentChannelForm(forms.ModelForm):
    provider = forms.ChoiceField(label=_("Provider"), widget=UnfoldAdminSelectWidget)
    secret = forms.CharField(
        label=_("Key / secret"),
        required=False,
        strip=True,
        widget=UnfoldAdminPasswordWidget(render_value=False, attrs={"autocomplete": "off"}),
        help_text=_("Stored encrypted and never shown again. Leave empty to keep the stored secret."),
    )

    class Meta:
        model = PaymentChannel
        fields = ["provider", "name", "is_enabled", "sort_order", *FEE_AND_LIMIT_FIELDS, "config"]
        help_texts = {
            "config": _('Non-secret settings, e.g. {"gateway_url": "https://pay.example.com/", "pid": "1001"}.'),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["provider"].choices = [(code, provider.label) for code, provider in PROVIDERS.items()]
        for name in ("fee_percent", "fee_fixed", "fee_payer"):  # empty: no fee, as before fees existed
            self.fields[name].required = False
        if self.instance.pk is not None:
            self.fields["provider"].disabled = True  # the stored secret is bound to the provider code
        elif not self.instance.secret_encrypted:
            self.fields["secret"].required = True

    def clean_fee_percent(self):
        return self.cleaned_data.get("fee_percent") or Decimal("0.00")

    def clean_fee_fixed(self):
        return self.cleaned_data.get("fee_fixed") or Decimal("0.00")

    def clean_fee_payer(self):
        return self.cleaned_data.get("fee_payer") or PaymentChannel.FeePayer.SHOP

    def clean_config(self):
        config = self.cleaned_data.get("config") or {}
        if not isinstance(config, dict):
            raise forms.ValidationError(_("Settings must be a JSON object."))
        return config

    def clean(self):
        data = super().clean()
        code = self.instance.provider if self.instance.pk is not None else data.get("provider")
        validate = getattr(PROVIDERS.get(code or ""), "validate_channel", None)
        if validate is not None and "config" not in self.errors:
            errors = validate(config=data.get("config") or {}, secret=data.get("secret") or "")
            for field, message in errors.items():
                self.add_error(field, message)
        return data


@admin.register(PaymentChannel)
class PaymentChannelAdmin(ModelAdmin):
    form = PaymentChannelForm
    list_display = ["name", "provider", "is_enabled", "sort_order", "fee_percent", "fee_fixed", "fee_payer", "updated"]
    fieldsets = [
        (None, {"fields": ["provider", "name", "is_enabled", "sort_order"]}),
        (_("Fee, limits and currencies"), {"fields": list(FEE_AND_LIMIT_FIELDS)}),
        (_("Connection"), {"fields": ["config", "secret", "secret_stored"]}),
    ]
    readonly_fields = ["secret_stored"]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        from payments.gateway_admin import gateway_channel_redirect

        channel = PaymentChannel.objects.filter(pk=object_id).first() if str(object_id).isdigit() else None
        target = gateway_channel_redirect(channel) if channel is not None else None
        if target:  # a configurable gateway is edited through its recipe form, never as raw settings
            return HttpResponseRedirect(target)
        return super().change_view(request, object_id, form_url, extra_context)

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        payment_channel_save(
            channel=obj,
            provider=data["provider"] if not change else obj.provider,
            name=data["name"],
            is_enabled=data.get("is_enabled", False),
            sort_order=data.get("sort_order") or 0,
            config=data.get("config") or {},
            secret=data.get("secret", ""),
            fees_and_limits={name: data[name] for name in FEE_AND_LIMIT_FIELDS if name in data},
        )

    @display(description=_("Secret"), boolean=True)
    def secret_stored(self, obj: PaymentChannel) -> bool:
        return bool(obj.secret_encrypted)


class ReadOnlyAdmin(ReadOnlyAdminMixin, ModelAdmin):
    """Read only: written by services alone."""


class OwedBackFilter(admin.SimpleListFilter):
    title = _("second payment")
    parameter_name = "owed_back"

    def lookups(self, request, model_admin):
        return [("open", _("Owed back to the customer"))]

    def queryset(self, request, queryset):
        if self.value() != "open":
            return queryset
        return duplicate_payments_open_filter(queryset)


@admin.register(PaymentAttempt)
class PaymentAttemptAdmin(ReadOnlyAdmin):
    list_display = ["created", "order_link", "provider", "amount", "currency", "status_display", "external_id"]
    list_filter = [OwedBackFilter, "status", "purpose", "provider", "created"]
    actions = ["second_payment_refund", "second_payment_refunded_outside", "second_payment_confirmed_by_hand"]

    def has_record_refund_permission(self, request) -> bool:
        return request.user.has_perm("ledger.add_transaction")

    def _second_payments(self, request, queryset, message, **how) -> None:
        settled = sum(
            duplicate_payment_refund(attempt_id=attempt.pk, staff=request.user, **how)
            for attempt in duplicate_payments_open(queryset.filter(status=PaymentAttempt.Status.SUCCEEDED))
        )
        self.message_user(request, message % {"n": settled})

    @action(description=_("Second payments: refund through the channel now"), permissions=["record_refund"])
    def second_payment_refund(self, request, queryset):
        self._second_payments(request, queryset, _("%(n)d second payment(s) refunded."))

    @action(
        description=_("Second payments: refunded in the gateway's dashboard (record them)"),
        permissions=["record_refund"],
    )
    def second_payment_refunded_outside(self, request, queryset):
        self._second_payments(request, queryset, _("%(n)d second payment(s) recorded as refunded."), outside=True)

    @action(
        description=_("Second payments: the payment a manual confirmation stood for (nothing owed)"),
        permissions=["record_refund"],
    )
    def second_payment_confirmed_by_hand(self, request, queryset):
        self._second_payments(
            request, queryset, _("%(n)d payment(s) recorded as confirmed by hand."), confirmed_by_hand=True
        )

    search_fields = ["token", "external_id", "order__number"]
    list_select_related = ["order"]
    fields = [
        "order",
        "purpose",
        "subject_id",
        "provider",
        "token",
        "amount",
        "fee",
        "fee_payer",
        "currency",
        "status",
        "external_id",
        "created",
        "succeeded_at",
    ]
    readonly_fields = fields

    @display(description=_("Paying for"), ordering="order__number")
    def order_link(self, obj: PaymentAttempt):
        if obj.order_id is None:  # a top-up or a branch sale Site A collects
            return f"{obj.get_purpose_display()} #{obj.subject_id}"
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


class PaymentSettingsForm(forms.ModelForm):
    new_password = forms.CharField(
        label=_("New confirmation password"),
        required=False,
        strip=False,
        min_length=8,
        widget=UnfoldAdminPasswordWidget(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_(
            "Asked for whenever staff confirm a payment by hand. Stored hashed and never shown. "
            "Leave both fields empty to keep the current one."
        ),
    )
    new_password_again = forms.CharField(
        label=_("New confirmation password (again)"),
        required=False,
        strip=False,
        widget=UnfoldAdminPasswordWidget(render_value=False, attrs={"autocomplete": "new-password"}),
    )

    class Meta:
        model = PaymentSettings
        fields: list[str] = []

    def clean(self):
        data = super().clean()
        first, second = data.get("new_password") or "", data.get("new_password_again") or ""
        if first != second:
            self.add_error("new_password_again", _("The two passwords do not match."))
        return data


@admin.register(PaymentSettings)
class PaymentSettingsAdmin(ModelAdmin):
    """One row per shop: the list goes straight to it."""

    form = PaymentSettingsForm
    fields = ["password_stored", "new_password", "new_password_again", "updated"]
    readonly_fields = ["password_stored", "updated"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        obj = PaymentSettings.load()
        return HttpResponseRedirect(reverse("admin:payments_paymentsettings_change", args=[obj.pk]))

    def save_model(self, request, obj, form, change):
        raw = form.cleaned_data.get("new_password") or ""
        if raw:
            confirmation_password_set(raw_password=raw)
        else:
            obj.save()

    @display(description=_("Confirmation password"), boolean=True)
    def password_stored(self, obj: PaymentSettings) -> bool:
        return bool(obj.confirmation_password)


@admin.register(ManualConfirmation)
class ManualConfirmationAdmin(ReadOnlyAdmin):
    list_display = ["created", "order_link", "amount", "currency", "staff", "gateway_reference", "reason"]
    list_filter = ["created"]
    search_fields = ["order__number", "gateway_reference", "reason", "staff__email"]
    list_select_related = ["order", "staff"]
    fields = ["order", "staff", "amount", "currency", "gateway_reference", "reason", "created"]
    readonly_fields = fields

    @display(description=_("Order"), ordering="order__number")
    def order_link(self, obj: ManualConfirmation):
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:orders_order_change", args=[obj.order_id]), obj.order.number
        )


from payments import reconciliation_admin, wallet_admin  # noqa: E402, F401 (register their pages)
