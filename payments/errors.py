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
