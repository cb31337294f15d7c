from __future__ import annotations

import strawberry

from payql.schema.types import (
    Balances,
    CreditTransaction,
    Enroll,
    Payment,
    PayoutAccount,
    Refund,
    UserError,
    Withdrawal,
    capped,
)

ERRORS_CAP = 1  # a mutation stops at its first error


def errors_field() -> list[UserError]:
    return capped(  # type: ignore[no-any-return]
        ERRORS_CAP, "Why the mutation did not do it; empty when it did. At most {cap}.", default_factory=list
    )


@strawberry.type
class CreateIntentPayload:
    payment: Payment | None = None
    client_secret: str | None = strawberry.field(default=None, description="Stripe PaymentIntent client secret.")
    checkout_url: str | None = strawberry.field(default=None, description="Stripe Checkout (credit packages).")
    confirmation_url: str | None = strawberry.field(default=None, description="YooKassa redirect confirmation.")
    errors: list[UserError] = errors_field()


@strawberry.type
class ConfirmPayload:
    payment: Payment | None = None
    errors: list[UserError] = errors_field()


@strawberry.type
class RefundPayload:
    refund: Refund | None = None
    payment: Payment | None = None
    errors: list[UserError] = errors_field()


@strawberry.type
class EnrollPayload:
    enroll: Enroll | None = None
    payment: Payment | None = None
    errors: list[UserError] = errors_field()


@strawberry.type
class SpendCreditsPayload:
    transaction: CreditTransaction | None = None
    balance: Balances | None = None
    errors: list[UserError] = errors_field()


@strawberry.type
class PayoutAccountPayload:
    payout_account: PayoutAccount | None = None
    errors: list[UserError] = errors_field()


@strawberry.type
class WithdrawalPayload:
    withdrawal: Withdrawal | None = None
    errors: list[UserError] = errors_field()
