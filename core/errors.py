"""Domain errors with stable machine-readable codes.

Services raise these; edges (forms, admin, API handlers, commands) turn them into a clear
message. ``code`` never changes once published; ``field`` names the input at fault, if any.
"""

from __future__ import annotations


class DomainError(Exception):
    code = "error"
    default_message = "The request could not be completed."

    def __init__(self, message: str | None = None, *, field: str | None = None, code: str | None = None):
        self.message = message or self.default_message
        self.field = field
        if code:
            self.code = code
        super().__init__(self.message)

    def as_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "fields": [self.field] if self.field else []}
