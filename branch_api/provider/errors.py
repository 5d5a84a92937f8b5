"""Branch API failures, each with its HTTP status and stable code (docs/branch-api.md)."""

from core.errors import DomainError


class ApiError(DomainError):
    status = 400


def _error(name: str, status: int, code: str, message: str) -> type[ApiError]:
    return type(name, (ApiError,), {"status": status, "code": code, "default_message": message})


MissingCredentials = _error("MissingCredentials", 401, "missing_credentials", "Signing headers are missing.")
InvalidKey = _error("InvalidKey", 401, "invalid_key", "Unknown API key.")
KeyRevoked = _error("KeyRevoked", 401, "key_revoked", "This API key was revoked.")
TimestampSkew = _error("TimestampSkew", 401, "timestamp_skew", "The request timestamp is too far from server time.")
InvalidNonce = _error("InvalidNonce", 401, "invalid_nonce", "The nonce must carry at least 128 random bits.")
NonceReused = _error("NonceReused", 401, "nonce_reused", "This nonce was already used.")
BadSignature = _error("BadSignature", 401, "bad_signature", "The request signature does not match.")
IpNotAllowed = _error("IpNotAllowed", 403, "ip_not_allowed", "Requests from this address are not allowed.")
BranchSuspended = _error("BranchSuspended", 403, "branch_suspended", "This branch is suspended.")
IdempotencyKeyRequired = _error(
    "IdempotencyKeyRequired",
    400,
    "idempotency_key_required",
    "POST requests need an Idempotency-Key header of 8 to 128 printable ASCII characters.",
)
RequestInFlight = _error("RequestInFlight", 409, "request_in_flight", "A request with this key is still running.")
IdempotencyKeyReused = _error(
    "IdempotencyKeyReused", 422, "idempotency_key_reused", "This Idempotency-Key was used for a different request."
)
InsufficientBalance = _error(
    "InsufficientBalance", 402, "insufficient_balance", "The branch balance does not cover this order."
)
OutOfStock = _error("OutOfStock", 409, "out_of_stock", "Not enough codes in stock.")
ExpectedTotalMismatch = _error(
    "ExpectedTotalMismatch", 409, "expected_total_mismatch", "The order total at cost differs from expected_total."
)
NotFound = _error("NotFound", 404, "not_found", "Not found.")
Invalid = _error("Invalid", 400, "invalid", "The request is not valid.")
PaymentUnavailable = _error(
    "PaymentUnavailable", 503, "payment_unavailable", "Site A cannot take a payment of this amount at the moment."
)
CollectNotEnabled = _error(
    "CollectNotEnabled", 403, "collect_not_enabled", "This branch takes payments through its own channels."
)
