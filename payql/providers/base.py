"""The neutral contract between the domain and every payment provider.

Services speak only these DTOs; an adapter turns its SDK's objects into them and its SDK's exceptions into
`ProviderError` subclasses. Amounts are integer minor units. A status a provider reports that we do not know maps
to `PENDING`, never to success.

Every method that changes something at the provider takes our idempotency key: calling it again with the same
key must not do the work twice (the real APIs replay the first answer; the mock does the same).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from payql.models.enums import (
    CaptureMethod,
    DisputeStatus,
    PaymentPurpose,
    PaymentStatus,
    ProviderName,
    RefundReason,
    RefundStatus,
)


class ObjectKind(StrEnum):
    """What a provider event is about; the webhook service has one handler per kind."""

    PAYMENT = "payment"
    REFUND = "refund"
    CHECKOUT_SESSION = "checkout_session"
    PAYOUT = "payout"
    DISPUTE = "dispute"
    OTHER = "other"


# What the webhook log can hold (webhook_events' columns); PostgreSQL holds no NUL in any text.
DEDUPE_KEY_LENGTH = 255
PROVIDER_CODE_LENGTH = 64  # payments.failure_code
EVENT_TYPE_LENGTH = 100


class ProviderError(Exception):
    """A provider call failed. `code` is the ErrorCode clients see; `provider_code` is the provider's own."""

    code = "PROVIDER_ERROR"
    transient = False

    def __init__(self, message: str, *, provider_code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        # as `failureCode` holds it (64 characters): a provider's code is short, but never trusted to be
        self.provider_code = provider_code[:PROVIDER_CODE_LENGTH] if provider_code else None


class PaymentDeclined(ProviderError):
    code = "PAYMENT_DECLINED"


class ProviderUnavailable(ProviderError):
    """Connection failure, timeout or a 5xx: the outcome is unknown, a retry with the same key is safe."""

    code = "PROVIDER_UNAVAILABLE"
    transient = True


class RateLimited(ProviderError):
    code = "RATE_LIMITED"
    transient = True


class ProviderInvalidRequest(ProviderError):
    code = "INVALID_INPUT"


class ProviderInvalidState(ProviderError):
    """The provider refuses the request because of its object's state (Stripe: a refund of a charge that has been
    charged back, `charge_disputed`): the same code as payql's own refusal of it."""

    code = "INVALID_STATE"


class PayoutRefused(ProviderError):
    """The provider refused a new payout definitively (an invalid destination, a closed account, any 4xx other than
    a rate limit or a concurrent use of the key): no money left, the withdrawal fails. `provider_code` is the
    provider's short code (never its prose), or None."""


@dataclass(frozen=True, slots=True)
class CreatePaymentRequest:
    """What we ask a provider to collect. `payment_id` is ours; providers store it as metadata."""

    payment_id: str
    purpose: PaymentPurpose
    amount_minor: int
    currency: str
    capture_method: CaptureMethod
    description: str
    payer_id: str
    return_url: str | None = None
    package_code: str | None = None
    customer_id: str | None = None  # the payer at the provider (Stripe Customer), when the provider has them


@dataclass(frozen=True, slots=True)
class ProviderRefund:
    provider_refund_id: str
    amount_minor: int
    currency: str
    status: RefundStatus
    reason: RefundReason | None = None
    failure_message: str | None = None
    # Our refund id when the refund was created through us (metadata), None for one made elsewhere.
    refund_id: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderPayment:
    """A provider's view of one payment at one moment, already mapped to our status machine's vocabulary."""

    provider_payment_id: str
    status: PaymentStatus
    amount_minor: int
    currency: str
    captured_minor: int = 0
    authorized_minor: int = 0
    refunds: tuple[ProviderRefund, ...] = ()
    client_secret: str | None = None
    confirmation_url: str | None = None
    checkout_url: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    expires_at: datetime | None = None
    payment_id: str | None = None  # ours, from the provider's metadata
    raw_status: str | None = None
    # What the provider kept of a captured payment as its commission (YooKassa's `amount - income_amount`).
    provider_fee_minor: int = 0


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """A verified webhook delivery: what happened, and to which provider object, in neutral terms.

    Ids are whatever JSON the provider's body held: construction refuses (ValueError) an event whose dedupe key,
    type or ids the webhook log cannot hold or look up (not a string, a NUL, too long), so that such a delivery is
    answered 400 once instead of failing with a 500 at every retry. `expect` is what the re-fetched object must
    show for an unsigned notification to count (YooKassa): the payment's `ProviderPayment.raw_status`, the
    refund's `RefundStatus` value, the payout's `ProviderPayout.status`; None when the event claims nothing.
    """

    dedupe_key: str
    event_type: str
    kind: ObjectKind
    object_id: str
    handled: bool  # the adapter knows this type; others are recorded and acknowledged
    payment_id: str | None = None  # ours, from the provider's metadata
    payment_ref: str | None = None  # the provider's id of the payment the object belongs to
    expect: str | None = None
    touches_refunds: bool = False  # the event reports a refund (Stripe's `charge.refunded` names a charge)
    created_at: int | None = None  # when the provider made the event (whole Unix seconds), for the lag metric

    def __post_init__(self) -> None:
        limits: dict[str, tuple[object, int | None, bool]] = {  # value, longest, may be None
            "dedupe key": (self.dedupe_key, DEDUPE_KEY_LENGTH, False),
            "event type": (self.event_type, EVENT_TYPE_LENGTH, False),
            "object id": (self.object_id, None, False),
            "payment id": (self.payment_id, None, True),
            "payment reference": (self.payment_ref, None, True),
            "expected status": (self.expect, None, True),
        }
        for name, (value, longest, optional) in limits.items():
            if value is None and optional:
                continue
            if not isinstance(value, str) or "\x00" in value or (longest is not None and not 0 < len(value) <= longest):
                raise ValueError(f"unusable {name}")
        if not isinstance(self.kind, ObjectKind):
            raise TypeError("unusable object kind")


@dataclass(frozen=True, slots=True)
class ProviderPayout:
    provider_payout_id: str
    amount_minor: int
    currency: str
    status: str  # "pending", "succeeded", "failed" (refused, canceled or reversed: no money reached the payee)
    failure_code: str | None = None  # the provider's short code for a failure, never its prose
    # What the provider took back of a payout it still shows as paid (a partial Stripe transfer reversal): payql
    # books a reversal only when it is whole (`status` "failed"); a part is logged and left to the operator.
    reversed_minor: int = 0


@dataclass(frozen=True, slots=True)
class ProviderDispute:
    """A provider's dispute (a chargeback, or an inquiry before one) at one moment, in neutral terms.

    The money is what the provider's balance shows for it, gross and cumulative: `withdrawn_minor` taken from the
    platform's balance, `reinstated_minor` given back (a dispute won), `fee_minor` the dispute fees charged and
    `fee_returned_minor` those given back. The funds are in `currency` (the disputed payment's), the fees in
    `fee_currency` when the provider's balance is kept in another currency (None: in `currency` too). A status the
    provider reports that we do not know is None (the dispute's status stays as it was). Only Stripe has disputes;
    YooKassa has no disputes API.
    """

    provider_dispute_id: str
    amount_minor: int
    currency: str
    status: DisputeStatus | None
    reason: str | None = None
    evidence_due_by: datetime | None = None
    created_at: datetime | None = None
    withdrawn_minor: int = 0
    reinstated_minor: int = 0
    fee_minor: int = 0
    fee_returned_minor: int = 0
    fee_currency: str | None = None
    payment_id: str | None = None  # ours, from the disputed charge's metadata
    payment_ref: str | None = None  # the provider's id of the disputed payment (a PaymentIntent)


class PaymentProvider(Protocol):
    """One payment provider (or its mock). Adapters are built once by `bootstrap` and injected."""

    name: ProviderName
    mock: bool
    # Whether a payment the payer has not paid yet can be canceled at the provider (YooKassa cancels only a hold).
    cancels_unpaid: bool

    def create_customer(self, user_id: str, idempotency_key: str) -> str | None:
        """The payer's record at the provider (a Stripe Customer), or None for a provider without them."""
        ...

    def create_payment(self, request: CreatePaymentRequest, idempotency_key: str) -> ProviderPayment:
        """Create the payment at the provider; the answer carries the client secret or redirect URL."""
        ...

    def retrieve_payment(self, provider_payment_id: str, *, refunds: bool = True) -> ProviderPayment:
        """Read the payment as the provider sees it now, with every one of its refunds.

        `refunds=False` is for a caller that knows the payment has no refund it needs to learn of (a payment event
        on a payment payql holds no refund of): the adapter may then skip the provider's refund list, one request
        fewer on the hot webhook path. Refund events always read the list."""
        ...

    def confirm_payment(
        self, provider_payment_id: str, payment_method: str | None, idempotency_key: str
    ) -> ProviderPayment:
        """Confirm server-side with `payment_method` when given (Stripe; the mock's test cards), else re-read."""
        ...

    def capture(
        self, provider_payment_id: str, amount_minor: int, currency: str, idempotency_key: str
    ) -> ProviderPayment: ...

    def cancel(self, provider_payment_id: str, idempotency_key: str) -> ProviderPayment: ...

    def refund(
        self,
        provider_payment_id: str,
        amount_minor: int,
        currency: str,
        reason: RefundReason,
        refund_id: str,
        idempotency_key: str,
    ) -> ProviderRefund: ...

    def retrieve_refund(self, provider_refund_id: str) -> ProviderRefund: ...

    def parse_webhook(self, headers: dict[str, str], body: bytes, client_ip: str | None) -> ProviderEvent:
        """Verify a delivery and say what it is about; raises `WebhookRejected` when it cannot be trusted."""
        ...

    def payout(self, destination: str, amount_minor: int, currency: str, idempotency_key: str) -> ProviderPayout:
        """Send earnings to a provider's account; `status` is "pending", "succeeded" or "failed"."""
        ...

    def retrieve_payout(self, provider_payout_id: str) -> ProviderPayout: ...

    def retrieve_dispute(self, provider_dispute_id: str) -> ProviderDispute:
        """Read a dispute as the provider sees it now; a provider without disputes raises `ProviderError`."""
        ...

    def list_disputes(self, since: datetime, limit: int) -> list[ProviderDispute]:
        """The disputes the provider opened since `since`, newest first, page by page, at most `limit` (what
        `payql reconcile --full` and `--report` compare: a dispute none of whose events reached payql). A provider
        without disputes has none."""
        ...

    def close(self) -> None:
        """Release the provider's HTTP clients and threads (the process or the command is ending)."""
        ...


class WebhookRejected(Exception):
    """A webhook delivery that is not verified (bad signature, untrusted sender, malformed body): HTTP 400."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
