"""Hold expiry (`payql holds expire`): release holds before the provider lets them lapse, and expire their enrolls.

A held payment (AUTHORIZED) whose enroll is not completed is canceled at its provider once its `expires_at` (YooKassa's
own, or seven days after authorization for a card hold at Stripe) is within `HOLD_EXPIRY_MARGIN_HOURS`; the enroll
becomes EXPIRED. Idempotent (the cancel carries a stable key per payment), and safe from cron on several replicas:
an advisory lock on PostgreSQL lets one run at a time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from payql.db import ROW_LOCK, Database
from payql.models import Enroll, Payment, utcnow
from payql.models.enums import EnrollStatus, PaymentPurpose, PaymentStatus
from payql.providers.base import ProviderError
from payql.services.jobs import exclusive
from payql.services.payments import PaymentService

logger = logging.getLogger("payql.holds")
BEFORE_COMPLETION = (EnrollStatus.PENDING, EnrollStatus.CONFIRMED, EnrollStatus.READY)


@dataclass(frozen=True, slots=True)
class HoldRun:
    expired: int
    failed: int
    skipped: bool = False  # another replica holds the job's lock


class HoldService:
    def __init__(self, db: Database, payments: PaymentService, margin: timedelta) -> None:
        self._db = db
        self._payments = payments
        self._margin = margin

    def expire(self, now: datetime | None = None) -> HoldRun:
        now = now or utcnow()
        with exclusive(self._db, "holds-expire") as mine:
            if not mine:
                return HoldRun(0, 0, skipped=True)
            with self._db.read() as session:
                due = list(
                    session.scalars(
                        select(Payment)
                        .join(Enroll, Enroll.id == Payment.enroll_id)
                        .where(
                            Payment.status == PaymentStatus.AUTHORIZED,
                            Payment.purpose == PaymentPurpose.ENROLL,
                            Payment.expires_at <= now + self._margin,
                            Enroll.status.in_(BEFORE_COMPLETION),
                        )
                        .order_by(Payment.expires_at)
                    )
                )
            expired = failed = 0
            for payment in due:
                try:
                    self._release(payment)
                    expired += 1
                except ProviderError as exc:
                    failed += 1
                    logger.warning("hold %s not released: %s (next run retries)", payment.id, exc.message)
            return HoldRun(expired, failed)

    def _release(self, payment: Payment) -> None:
        provider = self._payments.provider(payment.provider)
        answer = provider.cancel(payment.provider_payment_id or "", f"payql-{payment.id}-cancel")
        with self._db.uow() as uow:
            locked = uow.session.get(Payment, payment.id, with_for_update=ROW_LOCK)
            enroll = uow.session.get(Enroll, payment.enroll_id, with_for_update=ROW_LOCK) if payment.enroll_id else None
            if locked is None:  # pragma: no cover - payments are never deleted
                return
            self._payments.lifecycle.apply(uow.session, locked, answer)
            if enroll is not None and enroll.status in BEFORE_COMPLETION and locked.status is PaymentStatus.CANCELED:
                enroll.status = EnrollStatus.EXPIRED
                enroll.cancel_reason = "the payment hold lapsed before the enroll was completed"
            uow.commit()
