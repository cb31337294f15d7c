"""The domain's enumerations, shared by the tables, the services and the GraphQL schema."""

from __future__ import annotations

from enum import StrEnum


class PaymentStatus(StrEnum):
    PENDING = "PENDING"
    REQUIRES_ACTION = "REQUIRES_ACTION"
    PROCESSING = "PROCESSING"
    AUTHORIZED = "AUTHORIZED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    REFUNDED = "REFUNDED"


class PaymentPurpose(StrEnum):
    ENROLL = "ENROLL"
    PACKAGE = "PACKAGE"


class ProviderName(StrEnum):
    STRIPE = "STRIPE"
    YOOKASSA = "YOOKASSA"


class CaptureMethod(StrEnum):
    AUTOMATIC = "AUTOMATIC"
    MANUAL = "MANUAL"


class EnrollStatus(StrEnum):
    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    READY = "READY"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"


class EnrollAction(StrEnum):
    """A completion or cancellation the enroll's user asked for and a provider call has yet to finish."""

    COMPLETE = "COMPLETE"
    CANCEL = "CANCEL"


class RefundStatus(StrEnum):
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"


class RefundReason(StrEnum):
    REQUESTED_BY_CUSTOMER = "REQUESTED_BY_CUSTOMER"
    DUPLICATE = "DUPLICATE"
    FRAUDULENT = "FRAUDULENT"
    OTHER = "OTHER"


class WebhookStatus(StrEnum):
    RECEIVED = "RECEIVED"
    PROCESSED = "PROCESSED"
    IGNORED = "IGNORED"
    FAILED = "FAILED"


class CreditTransactionType(StrEnum):
    PURCHASED = "PURCHASED"
    SPENT = "SPENT"
    REFUNDED = "REFUNDED"
    EXPIRED = "EXPIRED"


class PayoutAccountStatus(StrEnum):
    PENDING = "PENDING"
    VERIFIED = "VERIFIED"
    REJECTED = "REJECTED"


class WithdrawalStatus(StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    REJECTED = "REJECTED"
    FAILED = "FAILED"


class DisputeStatus(StrEnum):
    """Stripe's dispute statuses in payql's terms: an inquiry (`WARNING_*`, no money moves) or a chargeback."""

    WARNING_NEEDS_RESPONSE = "WARNING_NEEDS_RESPONSE"
    WARNING_UNDER_REVIEW = "WARNING_UNDER_REVIEW"
    WARNING_CLOSED = "WARNING_CLOSED"
    NEEDS_RESPONSE = "NEEDS_RESPONSE"
    UNDER_REVIEW = "UNDER_REVIEW"
    WON = "WON"
    LOST = "LOST"
    PREVENTED = "PREVENTED"
