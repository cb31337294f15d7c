"""GraphQL object types (CONTRACT.md's names). No SQL here: values come through `nodes` and the loaders."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

import strawberry

from payql.money import format_minor
from payql.schema.enums import (
    CaptureMethod,
    CreditTransactionType,
    DisputeStatus,
    EnrollStatus,
    ErrorCode,
    PaymentPurpose,
    PaymentStatus,
    Provider,
    RefundReason,
    RefundStatus,
    WithdrawalStatus,
)
from payql.schema.limits import CAP, PAGE, SLICE
from payql.services.queries import CURRENCIES_CAP, DISPUTES_CAP, LIST_CAP, REFUNDS_CAP, list_size

N = TypeVar("N")


def capped(cap: int, description: str, *, sliced: str | None = None, **options: Any) -> Any:
    """A plain list field (no pages) of at most `cap` items: the description says so (`{cap}` in it), and the query
    cost reads the cap from the metadata. Its resolver returns no more.

    `sliced` names the parent's attribute that holds the list when the resolver only slices it to `first`: the
    fast execution path (schema/execution.py) then reads the attribute directly when `first` is not given."""
    metadata: dict[str, Any] = {CAP: cap}
    if sliced is not None:
        metadata[SLICE] = sliced
    return strawberry.field(description=description.format(cap=cap), metadata=metadata, **options)


@strawberry.type(
    description="An amount of money: a decimal string in major units and an ISO 4217 currency. It has no id: a "
    "client cache keeps it inside the object that holds it and merges its fields (README, Apollo typePolicies)."
)
class Money:
    amount: str = strawberry.field(description='Exactly the currency\'s decimals: "50.00" USD, "1500" JPY.')
    currency: str

    @classmethod
    def of(cls, minor: int, currency: str) -> Money:
        return cls(amount=format_minor(minor, currency), currency=currency)


@strawberry.type
class UserError:
    code: ErrorCode
    field: str | None
    message: str
    provider_code: str | None = strawberry.field(
        default=None,
        description="The payment provider's own code when the provider refused (the message is always payql's).",
    )


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class Edge(Generic[N]):
    cursor: str
    node: N


@strawberry.type
class Connection(Generic[N]):
    edges: list[Edge[N]] = strawberry.field(description="The page: at most `first` items.", metadata={PAGE: True})
    page_info: PageInfo
    _count: strawberry.Private[object]

    @strawberry.field
    def total_count(self) -> int:
        counter = self._count
        return int(counter()) if callable(counter) else 0


@strawberry.type
class CreditPackage:
    id: strawberry.ID = strawberry.field(description="The package's code: a stable key for client caches.")
    code: str
    name: str
    credits: int
    price: Money
    unit_price: str = strawberry.field(
        description="The price of one credit, two decimals finer than the currency, rounded down."
    )


# The object types below declare fields only: the values come from the adapters in `payql.schema.nodes`, whose
# plain properties GraphQL reads as attributes. A Strawberry resolver per field costs several times more.


@strawberry.type
class Refund:
    id: strawberry.ID
    payment_id: strawberry.ID
    amount: Money
    status: RefundStatus
    reason: RefundReason
    created_at: datetime
    failure_reason: str | None = strawberry.field(
        description="Why a FAILED or CANCELED refund did not reach the payer: the provider's short code "
        '(e.g. "expired_or_canceled_card") or "provider_refused"; null otherwise.'
    )


def _refunds(parent: strawberry.Parent[Any], first: int = REFUNDS_CAP) -> list[Refund]:
    refunds: list[Refund] = parent.refunds  # the node's, loaded for the whole page up to the cap
    return refunds[: list_size(first, REFUNDS_CAP)]


@strawberry.type(description="A chargeback (or an inquiry before one) the payer's bank opened on a payment.")
class Dispute:
    id: strawberry.ID
    payment_id: strawberry.ID
    status: DisputeStatus
    amount: Money
    reason: str | None = strawberry.field(description="The provider's reason, e.g. `fraudulent`.")
    evidence_due_by: datetime | None = strawberry.field(description="When evidence must reach the provider.")
    created_at: datetime


def _disputes(parent: strawberry.Parent[Any], first: int = DISPUTES_CAP) -> list[Dispute]:
    disputes: list[Dispute] = parent.disputes  # the node's, loaded for the whole page up to the cap
    return disputes[: list_size(first, DISPUTES_CAP)]


@strawberry.type
class Enroll:
    id: strawberry.ID
    status: EnrollStatus
    client_id: strawberry.ID
    provider_id: strawberry.ID
    title: str
    price: Money
    payment: Payment | None
    created_at: datetime
    expires_at: datetime | None


@strawberry.type
class Payment:
    id: strawberry.ID
    status: PaymentStatus
    purpose: PaymentPurpose
    provider: Provider
    mock: bool
    capture_method: CaptureMethod
    amount: Money
    captured_amount: Money
    refunded_amount: Money
    platform_fee: Money | None = strawberry.field(description="The platform's fee, once captured.")
    tax_amount: Money | None = strawberry.field(description="Tax withheld from the payee's share, once captured.")
    payee_amount: Money | None = strawberry.field(description="What the payee earns, once captured.")
    payer_id: strawberry.ID
    payee_id: strawberry.ID | None
    enroll: Enroll | None
    package: CreditPackage | None
    refunds: list[Refund] = capped(
        REFUNDS_CAP, "The oldest first. At most {cap}: `first` asks for fewer.", resolver=_refunds, sliced="refunds"
    )
    disputes: list[Dispute] = capped(
        DISPUTES_CAP,
        "Chargebacks, the oldest first. At most {cap}: `first` asks for fewer.",
        resolver=_disputes,
        sliced="disputes",
    )
    failure_code: str | None = strawberry.field(
        description=(
            "The provider's code for the last attempt that failed: a decline (the payment stays PENDING and can be "
            "paid again) or why it ended FAILED or CANCELED (YooKassa's `cancellation_details.reason`). An attempt "
            "that succeeds (a hold or a capture) clears it."
        )
    )
    failure_message: str | None
    created_at: datetime
    updated_at: datetime
    paid_at: datetime | None


PaymentConnection = Connection[Payment]
EnrollConnection = Connection[Enroll]


@strawberry.type
class CreditLot:
    id: strawberry.ID
    credits: int
    remaining: int
    expires_at: datetime
    payment_id: strawberry.ID | None


@strawberry.type(description="A line of the credit ledger: `credits` is signed (PURCHASED positive).")
class CreditTransaction:
    id: strawberry.ID
    type: CreditTransactionType
    credits: int
    balance_after: int
    expires_at: datetime | None
    reference: str | None
    created_at: datetime


@strawberry.type(description="A user's money in one currency; all amounts are the user's, shown positive.")
class AccountBalance:
    id: strawberry.ID = strawberry.field(
        description='"balance:<ownerId>:<currency>": the owner\'s user account in that currency, stable across reads, '
        "for client caches."
    )
    currency: str
    available: Money = strawberry.field(
        description="What can be withdrawn now (negative after a refund that followed a payout)."
    )
    pending: Money = strawberry.field(description="The share of enroll payments held or in escrow, not completed yet.")
    paid_out: Money = strawberry.field(description="What completed withdrawals sent.")


def _credit_lots(parent: strawberry.Parent[Any], first: int = LIST_CAP) -> list[CreditLot]:
    lots: list[CreditLot] = parent._credit_lots  # noqa: SLF001 - read up to the cap by the `balances` resolver
    return lots[: list_size(first, LIST_CAP)]


@strawberry.type
class Balances:
    id: strawberry.ID = strawberry.field(
        description='"balances:<ownerId>": whose balances these are, stable across reads, for client caches.'
    )
    credits: int
    _credit_lots: strawberry.Private[list[CreditLot]]
    credit_lots: list[CreditLot] = capped(
        LIST_CAP,
        "Unspent and unexpired, the soonest to expire first. At most {cap}: `first` asks for fewer.",
        resolver=_credit_lots,
        sliced="_credit_lots",
    )
    accounts: list[AccountBalance] = capped(
        CURRENCIES_CAP, "One per currency. At most {cap}: the currencies payql knows."
    )


@strawberry.type(description="The platform's books in one currency (admin).")
class PlatformBalance:
    currency: str
    revenue: Money
    tax: Money
    provider_payable: Money
    escrow: Money
    payouts_in_flight: Money
    provider_cash: Money = strawberry.field(
        description="= revenue + tax + providerPayable + escrow + payoutsInFlight - providerFees"
    )
    provider_fees: Money = strawberry.field(
        description="What providers kept as their commission (YooKassa): a platform cost, not the payee's."
    )


@strawberry.type(description="Where a provider is paid: a Stripe Connect account or a YooKassa payout destination.")
class PayoutAccount:
    id: strawberry.ID
    provider: Provider
    status: str = strawberry.field(description="PENDING, VERIFIED or REJECTED")
    currency: str
    external_account_id: str
    created_at: datetime


@strawberry.type
class Withdrawal:
    id: strawberry.ID
    provider_id: strawberry.ID
    amount: Money
    status: WithdrawalStatus
    reason: str | None = strawberry.field(description="Why an admin rejected the withdrawal.")
    failure_reason: str | None = strawberry.field(
        description=(
            "Why the payout failed (refused, canceled or reversed by the provider): payql's own text or the "
            "provider's short code."
        )
    )
    created_at: datetime
    processed_at: datetime | None
