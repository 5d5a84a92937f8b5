from django.utils.translation import gettext_lazy as _

from core.errors import DomainError


class CallbackRejected(DomainError):
    """A payment notification that must not change anything; ``code`` says why."""

    code = "callback_rejected"
    default_message = "The payment notification was rejected."


class ProviderUnavailable(DomainError):
    code = "provider_unavailable"
    default_message = "This payment method is not available."


class ManualConfirmationRefused(DomainError):
    """A manual payment confirmation (补单) that was not applied; ``code`` says why."""

    code = "manual_confirmation_refused"
    default_message = "The payment could not be confirmed manually."


class GatewayRecipeInvalid(DomainError):
    """A configurable gateway's recipe that cannot be used; ``field`` names the part at fault."""

    code = "gateway_recipe_invalid"
    default_message = "The gateway settings are incomplete or inconsistent."


class GatewayRequestFailed(DomainError):
    """A configurable gateway refused or failed a request (or its URL is not allowed)."""

    code = "gateway_request_failed"
    default_message = _("The payment gateway could not start this payment. Please try again.")
