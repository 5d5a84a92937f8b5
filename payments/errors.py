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


class ChannelNotApplicable(DomainError):
    """The channel exists but does not take this payment (amount outside its limits, or currency)."""

    code = "channel_not_applicable"
    default_message = "This payment method cannot be used for this amount or currency."
