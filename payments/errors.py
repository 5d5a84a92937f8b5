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


class ReconciliationFailed(DomainError):
    """A reconciliation that could not compare anything (no such source, gateway unreachable, …)."""

    code = "reconciliation_failed"
    default_message = "The reconciliation could not be run."


class ReconciliationFileInvalid(DomainError):
    """An uploaded gateway statement (CSV) that cannot be read; nothing is stored."""

    code = "reconciliation_file_invalid"
    default_message = "The file could not be read as a CSV statement."


class RefundRefused(DomainError):
    """A refund that was not made; ``code`` says why (nothing was booked)."""

    code = "refund_refused"
    default_message = "The refund could not be made."


class RefundOutcomeUnknown(DomainError):
    """The gateway did not answer a refund: it may or may not have been made. The refund stays
    pending (its amount stays reserved) until it is submitted again with the same idempotency key."""

    code = "refund_outcome_unknown"
    default_message = "The payment gateway did not answer. The refund is pending; retry it later."


class ChannelNotApplicable(DomainError):
    """The channel exists but does not take this payment (amount outside its limits, or currency)."""

    code = "channel_not_applicable"
    default_message = "This payment method cannot be used for this amount or currency."


class GatewayRecipeInvalid(DomainError):
    """A configurable gateway's recipe that cannot be used; ``field`` names the part at fault."""

    code = "gateway_recipe_invalid"
    default_message = "The gateway settings are incomplete or inconsistent."


class GatewayRequestFailed(DomainError):
    """A configurable gateway refused or failed a request (or its URL is not allowed)."""

    code = "gateway_request_failed"
    default_message = _("The payment gateway could not start this payment. Please try again.")
