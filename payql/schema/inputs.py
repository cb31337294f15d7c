from __future__ import annotations

import strawberry

from payql.schema.enums import CaptureMethod, Provider, RefundReason


@strawberry.input(description="An amount: a decimal string in major units and an ISO 4217 currency code.")
class MoneyInput:
    amount: str
    currency: str


@strawberry.input
class CreateIntentInput:
    enroll_id: strawberry.ID | None = None
    package_code: str | None = None
    provider: Provider = Provider.STRIPE
    capture_method: CaptureMethod | None = strawberry.field(
        default=None, description="Enroll payments default to MANUAL (held until confirmEnroll); packages AUTOMATIC."
    )
    return_url: str | None = None
    idempotency_key: str | None = None


@strawberry.input
class RefundInput:
    payment_id: strawberry.ID
    amount: MoneyInput | None = strawberry.field(default=None, description="Omitted: all that is left.")
    reason: RefundReason = RefundReason.REQUESTED_BY_CUSTOMER
    note: str | None = None
    idempotency_key: str | None = None


@strawberry.input
class CreateEnrollInput:
    provider_id: strawberry.ID
    title: str
    price: MoneyInput


@strawberry.input
class SpendCreditsInput:
    credits: int
    reference: str | None = None
    idempotency_key: str | None = None


@strawberry.input
class RegisterPayoutAccountInput:
    provider: Provider
    external_account_id: str = strawberry.field(
        description="Stripe: the Connect account id (acct_…). YooKassa: a payout token, or wallet:<YooMoney number>."
    )
    currency: str | None = strawberry.field(default=None, description="Defaults to USD (Stripe) or RUB (YooKassa).")


@strawberry.input
class RequestWithdrawalInput:
    amount: MoneyInput
    idempotency_key: str | None = None
