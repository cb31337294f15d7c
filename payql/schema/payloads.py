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
)


@strawberry.type
class CreateIntentPayload:
    payment: Payment | None = None
    client_secret: str | None = strawberry.field(default=None, description="Stripe PaymentIntent client secret.")
    checkout_url: str | None = strawberry.field(default=None, description="Stripe Checkout (credit packages).")
    confirmation_url: str | None = strawberry.field(default=None, description="YooKassa redirect confirmation.")
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class ConfirmPayload:
    payment: Payment | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class RefundPayload:
    refund: Refund | None = None
    payment: Payment | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class EnrollPayload:
    enroll: Enroll | None = None
    payment: Payment | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class SpendCreditsPayload:
    transaction: CreditTransaction | None = None
    balance: Balances | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class PayoutAccountPayload:
    payout_account: PayoutAccount | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class WithdrawalPayload:
    withdrawal: Withdrawal | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)
