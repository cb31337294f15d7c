"""Expected failures of the use cases. Each carries an `ErrorCode` (CONTRACT.md) and a message safe for clients.

Mutations turn them into `UserError`s; queries into GraphQL errors with `extensions.code`.
"""

from __future__ import annotations


class DomainError(Exception):
    code = "INVALID_INPUT"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code


class Unauthenticated(DomainError):
    code = "UNAUTHENTICATED"


class Forbidden(DomainError):
    code = "FORBIDDEN"


class NotFound(DomainError):
    code = "NOT_FOUND"


class InvalidInput(DomainError):
    code = "INVALID_INPUT"


class InvalidState(DomainError):
    code = "INVALID_STATE"


class PaymentDisputed(InvalidState):
    """A refund of a payment with an open chargeback or a lost one: the payer's bank returns (or returned) the money;
    a refund would pay it twice, and the provider refuses it too (Stripe: `charge_disputed`)."""


class Conflict(DomainError):
    code = "CONFLICT"


class InsufficientFunds(DomainError):
    code = "INSUFFICIENT_FUNDS"
