"""Failures talking to Site A, each with the API's stable ``code`` (docs/branch-api.md)."""

from __future__ import annotations

from core.errors import DomainError

# 4xx answers that will succeed if simply sent again later (the contract's own words).
RETRYABLE_CODES = frozenset({"request_in_flight", "throttled"})


class UpstreamError(DomainError):
    """Site A did not do what was asked. ``retryable``: the same request may succeed later unchanged."""

    code = "upstream_error"
    default_message = "Site A could not be reached."
    retryable = False

    def __init__(self, message: str | None = None, *, code: str | None = None, status: int | None = None):
        super().__init__(message, code=code)
        self.status = status


class UpstreamUnavailable(UpstreamError):
    """Network failure, timeout, 5xx or an answer that is not the API's JSON: try again later."""

    code = "unreachable"
    retryable = True


class UpstreamRefused(UpstreamError):
    """A 4xx answer with the API's error code (e.g. ``insufficient_balance``, ``out_of_stock``)."""

    code = "refused"
    default_message = "Site A refused the request."

    def __init__(self, message: str | None = None, *, code: str | None = None, status: int | None = None):
        super().__init__(message, code=code, status=status)
        self.retryable = status == 429 or self.code in RETRYABLE_CODES


class NotConnected(DomainError):
    code = "upstream_not_connected"
    default_message = "This shop has no connection to Site A."


class SelectionInvalid(DomainError):
    code = "upstream_selection_invalid"
    default_message = "Choose a category or a product of Site A."


class MarkupInvalid(DomainError):
    code = "markup_invalid"
    default_message = "Choose a markup between 0 and 1000 percent."


class TopUpInvalid(DomainError):
    code = "top_up_invalid"
    default_message = "Enter an amount between 0.01 and 100,000."
