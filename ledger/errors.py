from core.errors import DomainError


class UnbalancedTransaction(DomainError):
    code = "ledger_unbalanced"
    default_message = "Journal entries must sum to zero."


class InsufficientFunds(DomainError):
    code = "insufficient_funds"
    default_message = "The account balance is too low for this transaction."


class IdempotencyConflict(DomainError):
    code = "ledger_idempotency_conflict"
    default_message = "This idempotency key was already used for different entries."
