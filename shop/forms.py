from django import forms
from django.utils.translation import gettext_lazy as _

from catalog.selectors import ProductCard


class BuyForm(forms.Form):
    variant = forms.IntegerField(widget=forms.HiddenInput)
    quantity = forms.IntegerField(label=_("Quantity"), min_value=1, max_value=10000, initial=1)
    expected_price = forms.DecimalField(widget=forms.HiddenInput, required=False, max_digits=18, decimal_places=2)
    email = forms.EmailField(label=_("E-mail for delivery"))
    lookup_password = forms.CharField(
        label=_("Order lookup password"),
        required=False,
        min_length=4,
        max_length=64,
        widget=forms.PasswordInput(render_value=False),
        help_text=_("Lets you look this order up later without an account."),
    )
    payment = forms.ChoiceField(label=_("Payment method"), choices=[("sandbox", _("Sandbox (test payment)"))])

    def __init__(self, *args, user=None, card: ProductCard | None = None, channels=None, **kwargs):
        super().__init__(*args, **kwargs)
        from payments.selectors import checkout_channels

        self.fields["payment"].choices = checkout_channels() if channels is None else channels
        self.user = user
        self.card = card
        if user is not None and user.is_authenticated:
            self.fields["email"].initial = user.email

    def clean(self):
        cleaned = super().clean()
        if not (self.user and self.user.is_authenticated) and not cleaned.get("lookup_password"):
            self.add_error("lookup_password", _("Choose a password so you can look this order up later."))
        if self.card is not None:
            self._check_against_card(cleaned)
        return cleaned

    def _check_against_card(self, cleaned: dict) -> None:
        """Early, translated feedback on what the page showed; `order_place` re-checks all of it under lock."""
        if "variant" not in cleaned:
            return
        view = next((v for v in self.card.variants if v.variant.pk == cleaned["variant"]), None)
        if view is None:
            self.add_error("variant", _("This item is not available."))
            return
        if not view.in_stock:
            self.add_error("variant", _("Sorry, this item is sold out."))
            return
        quantity, product = cleaned.get("quantity"), self.card.product
        if quantity is None:
            return
        if not product.min_quantity <= quantity <= product.max_quantity:
            message = _("Please choose between %(min)s and %(max)s.")
            self.add_error("quantity", message % {"min": product.min_quantity, "max": product.max_quantity})
        elif view.stock is not None and quantity > view.stock:
            self.add_error("quantity", _("Sorry, only %(count)s left in stock.") % {"count": view.stock})


class OrderLookupForm(forms.Form):
    number = forms.CharField(label=_("Order number"), max_length=32)
    email = forms.EmailField(label=_("E-mail"))
    password = forms.CharField(label=_("Lookup password"), max_length=64, widget=forms.PasswordInput)

    def clean_number(self):
        return self.cleaned_data["number"].strip().upper()
