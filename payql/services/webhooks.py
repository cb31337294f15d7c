"""Provider notifications: recorded before processing, deduplicated, and applied by re-reading the provider.

A delivery is verified by the provider adapter (`parse_webhook`), then written to the webhook log under a unique
(provider, dedupe key). A repeat of a processed or ignored event changes nothing; a repeat of a failed one is
processed again. Handlers treat the event as a trigger only: they re-read the payment at the provider and go
through `PaymentService.apply`, so events in any order, late or repeated, end in the provider's current state and
never move a payment backwards. Unknown event types and objects that are not ours are acknowledged and ignored.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from payql.db import Database
from payql.models import Payment, WebhookEvent, new_id, utcnow
from payql.models.enums import PaymentPurpose, ProviderName, WebhookStatus
from payql.providers.base import ProviderEvent
from payql.services.payments import PaymentService

logger = logging.getLogger("payql.webhooks")
KEPT_HEADERS = ("content-type", "user-agent", "stripe-signature", "x-forwarded-for")


class Outcome(StrEnum):
    PROCESSED = "processed"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"


class RetryLater(Exception):
    """The event cannot be applied yet (its payment is still being created): answer 500 so it is sent again."""


class WebhookService:
    def __init__(self, db: Database, payments: PaymentService) -> None:
        self._db = db
        self._payments = payments
        self._handlers: dict[ProviderName, Callable[[ProviderEvent], Outcome]] = {
            ProviderName.STRIPE: self._sync_payment,
        }

    def receive(
        self, provider: ProviderName, event: ProviderEvent, body: bytes, headers: dict[str, str], sender_ip: str | None
    ) -> Outcome:
        record_id = self._record(provider, event, body, headers, sender_ip)
        if record_id is None:
            return Outcome.DUPLICATE
        handler = self._handlers.get(provider)
        if handler is None or not event.data.get("handled", False):
            logger.info(
                "%s webhook %s (%s) acknowledged and ignored", provider.value, event.dedupe_key, event.event_type
            )
            self._finish(record_id, WebhookStatus.IGNORED, None)
            return Outcome.IGNORED
        try:
            outcome = handler(event)
        except Exception as exc:
            self._finish(record_id, WebhookStatus.FAILED, f"{type(exc).__name__}: {exc}"[:2000])
            raise
        status = WebhookStatus.PROCESSED if outcome is Outcome.PROCESSED else WebhookStatus.IGNORED
        self._finish(record_id, status, None)
        return outcome

    def _record(
        self, provider: ProviderName, event: ProviderEvent, body: bytes, headers: dict[str, str], sender_ip: str | None
    ) -> str | None:
        """Write the delivery to the log; None when it was already processed (a duplicate)."""
        kept = {name: headers[name] for name in KEPT_HEADERS if name in headers}
        with self._db.uow() as uow:
            row = WebhookEvent(
                id=new_id("whk"),
                provider=provider,
                dedupe_key=event.dedupe_key,
                event_type=event.event_type,
                payload=body.decode("utf-8", errors="replace"),
                headers=json.dumps(kept),
                sender_ip=sender_ip,
            )
            uow.session.add(row)
            try:
                uow.commit()
            except IntegrityError:
                pass
            else:
                return row.id
        with self._db.uow() as uow:
            existing = uow.session.scalars(
                select(WebhookEvent)
                .where(WebhookEvent.provider == provider, WebhookEvent.dedupe_key == event.dedupe_key)
                .with_for_update()
            ).one()
            if existing.status in {WebhookStatus.PROCESSED, WebhookStatus.IGNORED}:
                return None
            existing.attempts += 1  # a retry of a failed (or interrupted) delivery: process it again
            uow.commit()
            return existing.id

    def _finish(self, record_id: str, status: WebhookStatus, error: str | None) -> None:
        with self._db.uow() as uow:
            row = uow.session.get(WebhookEvent, record_id)
            if row is not None:
                row.status = status
                row.error = error
                row.processed_at = utcnow()
                uow.commit()

    def _find_payment(self, provider: ProviderName, event: ProviderEvent) -> Payment | None:
        with self._db.read() as session:
            if event.payment_id:
                payment = session.get(Payment, event.payment_id)
                if payment is not None and payment.provider is provider:
                    return payment
            ref = event.data.get("payment_ref")
            if isinstance(ref, str) and ref:
                return session.scalars(
                    select(Payment).where(Payment.provider == provider, Payment.provider_payment_id == ref)
                ).first()
        return None

    def _sync_payment(self, event: ProviderEvent) -> Outcome:
        payment = self._find_payment(ProviderName.STRIPE, event)
        if payment is None:
            logger.info("Stripe event %s names no payment of ours: ignored", event.dedupe_key)
            return Outcome.IGNORED
        provider_id = payment.provider_payment_id
        if provider_id is None:
            ref = event.data.get("payment_ref")
            checkout_event = event.object_kind == "checkout.session"
            if payment.purpose is PaymentPurpose.PACKAGE and not checkout_event:
                raise RetryLater(f"payment {payment.id} is still being created")
            provider_id = str(ref) if ref else None
        if provider_id is None:
            raise RetryLater(f"payment {payment.id} has no provider id yet")
        answer = self._payments.provider(payment.provider).retrieve_payment(provider_id)
        self._payments.apply_answer(payment.id, answer)
        return Outcome.PROCESSED
