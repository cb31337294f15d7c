"""GraphQL object types. Resolvers receive the ORM row as `root` and map it; no SQL here but through loaders."""

from __future__ import annotations

from datetime import datetime
from typing import Generic, TypeVar

import strawberry
from strawberry.types import Info

from payql import models as m
from payql.money import format_minor
from payql.schema.context import Context
from payql.schema.enums import (
    CaptureMethod,
    EnrollStatus,
    ErrorCode,
    PaymentPurpose,
    PaymentStatus,
    Provider,
    RefundReason,
    RefundStatus,
)
from payql.services.catalogue import Package

N = TypeVar("N")


@strawberry.type(description="An amount of money: a decimal string in major units and an ISO 4217 currency.")
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
    edges: list[Edge[N]]
    page_info: PageInfo
    _count: strawberry.Private[object]

    @strawberry.field
    def total_count(self) -> int:
        counter = self._count
        return int(counter()) if callable(counter) else 0


@strawberry.type
class CreditPackage:
    code: str
    name: str
    credits: int

    @strawberry.field
    def price(self, root: Package) -> Money:
        return Money.of(root.price.minor, root.price.currency)

    @strawberry.field
    def unit_price(self, root: Package) -> str:
        return root.unit_price


@strawberry.type
class Refund:
    id: strawberry.ID
    status: RefundStatus
    reason: RefundReason
    created_at: datetime

    @strawberry.field
    def payment_id(self, root: m.Refund) -> strawberry.ID:
        return strawberry.ID(root.payment_id)

    @strawberry.field
    def amount(self, root: m.Refund) -> Money:
        return Money.of(root.amount_minor, root.currency)


@strawberry.type
class Enroll:
    id: strawberry.ID
    status: EnrollStatus
    client_id: strawberry.ID
    provider_id: strawberry.ID
    title: str
    created_at: datetime
    expires_at: datetime | None

    @strawberry.field
    def price(self, root: m.Enroll) -> Money:
        return Money.of(root.price_minor, root.currency)

    @strawberry.field
    def payment(self, root: m.Enroll, info: Info[Context, None]) -> Payment | None:
        return info.context.loaders.enroll_payment.load(root.id)  # type: ignore[return-value]


@strawberry.type
class Payment:
    id: strawberry.ID
    status: PaymentStatus
    purpose: PaymentPurpose
    provider: Provider
    mock: bool
    capture_method: CaptureMethod
    payer_id: strawberry.ID
    payee_id: strawberry.ID | None
    failure_code: str | None
    failure_message: str | None
    created_at: datetime
    updated_at: datetime
    paid_at: datetime | None

    @strawberry.field
    def amount(self, root: m.Payment) -> Money:
        return Money.of(root.amount_minor, root.currency)

    @strawberry.field
    def captured_amount(self, root: m.Payment) -> Money:
        return Money.of(root.captured_minor, root.currency)

    @strawberry.field
    def refunded_amount(self, root: m.Payment) -> Money:
        return Money.of(root.refunded_minor, root.currency)

    @strawberry.field
    def platform_fee(self, root: m.Payment) -> Money | None:
        return None if root.fee_minor is None else Money.of(root.fee_minor, root.currency)

    @strawberry.field
    def tax_amount(self, root: m.Payment) -> Money | None:
        return None if root.tax_minor is None else Money.of(root.tax_minor, root.currency)

    @strawberry.field
    def payee_amount(self, root: m.Payment) -> Money | None:
        return None if root.payee_minor is None else Money.of(root.payee_minor, root.currency)

    @strawberry.field
    def enroll(self, root: m.Payment, info: Info[Context, None]) -> Enroll | None:
        if root.enroll_id is None:
            return None
        return info.context.loaders.enroll.load(root.enroll_id)  # type: ignore[return-value]

    @strawberry.field
    def package(self, root: m.Payment, info: Info[Context, None]) -> CreditPackage | None:
        if root.package_code is None:
            return None
        return info.context.services.catalogue.get(root.package_code)  # type: ignore[return-value]

    @strawberry.field
    def refunds(self, root: m.Payment, info: Info[Context, None]) -> list[Refund]:
        return info.context.loaders.refunds.load(root.id)  # type: ignore[return-value]


PaymentConnection = Connection[Payment]
EnrollConnection = Connection[Enroll]


@strawberry.type
class CreditLot:
    id: strawberry.ID
    credits: int
    remaining: int
    expires_at: datetime
    payment_id: strawberry.ID | None


@strawberry.type(description="A user's money in one currency; all amounts are the user's, shown positive.")
class AccountBalance:
    currency: str
    available: Money = strawberry.field(
        description="What can be withdrawn now (negative after a refund that followed a payout)."
    )
    pending: Money = strawberry.field(description="The share of enroll payments held or in escrow, not completed yet.")
    paid_out: Money = strawberry.field(description="What completed withdrawals sent.")


@strawberry.type
class Balances:
    credits: int
    credit_lots: list[CreditLot]
    accounts: list[AccountBalance]


@strawberry.type(description="The platform's books in one currency (admin).")
class PlatformBalance:
    currency: str
    revenue: Money
    tax: Money
    provider_payable: Money
    escrow: Money
    payouts_in_flight: Money
    provider_cash: Money = strawberry.field(description="= revenue + tax + providerPayable + escrow + payoutsInFlight")
