from django.utils.translation import gettext_lazy as _

from core.errors import DomainError


class VariantUnavailable(DomainError):
    code = "variant_unavailable"
    default_message = _("This item is not available.")


class QuantityOutOfRange(DomainError):
    code = "quantity_out_of_range"
    default_message = _("Please choose a quantity within the limits shown.")


class PriceChanged(DomainError):
    code = "price_changed"
    default_message = _("The price has changed since you opened the page. Please review the new total.")


class CheckoutInputMissing(DomainError):
    code = "checkout_input_missing"
    default_message = _("Please fill in the required details.")


class OrderNotPayable(DomainError):
    code = "order_not_payable"
    default_message = _("This order can no longer be paid.")


class OrderStateError(DomainError):
    code = "order_state"
    default_message = _("This action is not possible in the order's current state.")
