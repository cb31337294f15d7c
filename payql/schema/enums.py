"""GraphQL enums: the domain's enums, exposed under CONTRACT.md's names (`ProviderName` is `Provider`)."""

from __future__ import annotations

from enum import StrEnum

import strawberry

from payql.models.enums import (
    CaptureMethod,
    CreditTransactionType,
    DisputeStatus,
    EnrollStatus,
    PaymentPurpose,
    PaymentStatus,
    ProviderName,
    RefundReason,
    RefundStatus,
    WithdrawalStatus,
)

for _enum in (
    CaptureMethod,
    CreditTransactionType,
    DisputeStatus,
    EnrollStatus,
    PaymentPurpose,
    PaymentStatus,
    RefundReason,
    RefundStatus,
):
    strawberry.enum(_enum)
strawberry.enum(ProviderName, name="Provider")
Provider = ProviderName


@strawberry.enum
class ErrorCode(StrEnum):
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    INVALID_INPUT = "INVALID_INPUT"
    INVALID_STATE = "INVALID_STATE"
    CONFLICT = "CONFLICT"
    PAYMENT_DECLINED = "PAYMENT_DECLINED"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    PROVIDER_ERROR = "PROVIDER_ERROR"
    PROVIDER_UNAVAILABLE = "PROVIDER_UNAVAILABLE"
    RATE_LIMITED = "RATE_LIMITED"


__all__ = [
    "CaptureMethod",
    "CreditTransactionType",
    "DisputeStatus",
    "EnrollStatus",
    "ErrorCode",
    "PaymentPurpose",
    "PaymentStatus",
    "Provider",
    "RefundReason",
    "RefundStatus",
    "WithdrawalStatus",
]
