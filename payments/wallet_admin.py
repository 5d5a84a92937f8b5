"""Staff pages for customer wallets: who holds what, every movement, and adjustments with a reason."""

from __future__ import annotations

import uuid

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db.models import BigIntegerField, OuterRef, Subquery
from django.db.models.functions import Cast
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin
from unfold.decorators import action, display
from unfold.widgets import UnfoldAdminDecimalFieldWidget, UnfoldAdminTextInputWidget

from core.admin_site import ReadOnlyAdminMixin
from core.errors import DomainError
from ledger.models import Entry
from payments.models import CustomerWallet
from payments.wallet import MIN_ADJUSTMENT_REASON, wallet_adjust

MOVEMENTS_SHOWN = 50


class WalletAdjustForm(forms.Form):
    amount = forms.DecimalField(
        label=_("Amount"),
        max_digits=18,
        decimal_places=2,
        help_text=_("Positive credits the wallet, negative debits it."),
        widget=UnfoldAdminDecimalFieldWidget,  # a plain input has no border on the admin's page
    )
    reason = forms.CharField(
        label=_("Reason"), min_length=MIN_ADJUSTMENT_REASON, max_length=200, widget=UnfoldAdminTextInputWidget
    )
    request_key = forms.CharField(widget=forms.HiddenInput)


@admin.register(CustomerWallet)
class CustomerWalletAdmin(ReadOnlyAdminMixin, ModelAdmin):
    list_display = ["customer", "balance_display", "currency", "updated"]
    search_fields = ["owner_id"]
    fields = ["customer", "code", "balance_display", "currency", "updated"]
    readonly_fields = fields
    actions_detail = ["adjust"]

    def get_queryset(self, request):
        email = get_user_model().objects.filter(pk=Cast(OuterRef("owner_id"), BigIntegerField())).values("email")
        return super().get_queryset(request).annotate(customer_email=Subquery(email[:1]))

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(customer_email__icontains=term) | queryset.filter(owner_id=term), False

    @display(description=_("Customer"), ordering="customer_email")
    def customer(self, obj: CustomerWallet) -> str:
        return getattr(obj, "customer_email", None) or f"#{obj.owner_id}"

    @display(description=_("Balance"), ordering="balance")
    def balance_display(self, obj: CustomerWallet):
        return obj.natural_balance

    @action(description=_("Adjust balance"), url_path="adjust", permissions=["view"], icon="account_balance_wallet")
    def adjust(self, request, object_id):
        wallet = self.get_queryset(request).filter(pk=object_id).first()
        if wallet is None:
            raise Http404
        if request.method == "POST" and not request.user.has_perm("ledger.add_transaction"):
            messages.error(request, _("You may look at wallets but not adjust them."))
            return HttpResponseRedirect(request.path)
        form = WalletAdjustForm(request.POST or None, initial={"request_key": uuid.uuid4().hex})
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                wallet_adjust(
                    user_id=int(wallet.owner_id),
                    amount=data["amount"],
                    reason=data["reason"],
                    staff=request.user,
                    request_key=data["request_key"],
                )
            except DomainError as exc:
                messages.error(request, exc.message)
            else:
                messages.success(request, _("The wallet was adjusted by %(amount)s.") % {"amount": data["amount"]})
                return HttpResponseRedirect(request.path)
        movements = (
            Entry.objects.filter(account_id=wallet.pk).select_related("transaction").order_by("-created", "-pk")
        )[:MOVEMENTS_SHOWN]
        for entry in movements:
            entry.customer_amount = -entry.amount  # a credit to the liability is money in the wallet
        wallet.refresh_from_db(fields=["balance"])
        context = {
            **self.admin_site.each_context(request),
            "title": _("Wallet of %(customer)s") % {"customer": self.customer(wallet)},
            "opts": self.model._meta,
            "wallet": wallet,
            "balance": wallet.natural_balance,
            "movements": movements,
            "form": form,
            "may_adjust": request.user.has_perm("ledger.add_transaction"),
            "list_url": reverse("admin:payments_customerwallet_changelist"),
        }
        return TemplateResponse(request, "admin/payments/customerwallet/adjust.html", context)
