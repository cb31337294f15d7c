"""SQLAlchemy tables, one module per aggregate."""

from payql.models.base import Base, new_id, utcnow
from payql.models.counts import PaymentCount
from payql.models.credits import CreditLot, CreditTransaction, ProviderCustomer
from payql.models.dispute import Dispute
from payql.models.enroll import Enroll
from payql.models.idempotency import IdempotencyRecord
from payql.models.ledger import (
    LEDGER_SHARDS,
    PLATFORM,
    SHARDED_KINDS,
    AccountKind,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
)
from payql.models.mock import MockObject
from payql.models.package import CreditPackage
from payql.models.payment import Payment, Refund
from payql.models.payout import PayoutAccount, Withdrawal
from payql.models.user import User
from payql.models.webhook import WebhookEvent

__all__ = [
    "LEDGER_SHARDS",
    "PLATFORM",
    "SHARDED_KINDS",
    "AccountKind",
    "Base",
    "CreditLot",
    "CreditPackage",
    "CreditTransaction",
    "Dispute",
    "Enroll",
    "IdempotencyRecord",
    "LedgerAccount",
    "LedgerEntry",
    "LedgerTransaction",
    "MockObject",
    "Payment",
    "PaymentCount",
    "PayoutAccount",
    "ProviderCustomer",
    "Refund",
    "User",
    "WebhookEvent",
    "Withdrawal",
    "new_id",
    "utcnow",
]
