"""Provider notifications: verified, deduplicated, applied by re-reading the provider, and always recorded.

A delivery is verified by the provider adapter (`parse_webhook`) before this service sees it. The webhook log
holds one row per (provider, dedupe key) under a unique constraint:

- a delivery whose event was already processed or ignored is a duplicate: nothing happens, 200;
- otherwise the handler re-reads the payment at the provider (the event is only a trigger: events in any order,
  late or repeated, end in the provider's current state, and `PaymentService.apply` never moves a payment
  backwards), then the log row and the payment's new state commit in one transaction;
- a failure is recorded in a transaction of its own (status FAILED, the error, the attempt count) and the route
  answers 500 so that the provider delivers again; the retry is processed once.

Recording the delivery together with its effects keeps one commit per event at most, instead of a commit to record
it and another to apply it. And deliveries that arrive together commit together (group commit, `_apply_group`):
the deliveries whose re-fetched payments are ready while this process's previous group is in its transaction wait
for it, and the next group applies them all in one transaction. Their payments are locked in id order in one
statement (with their enrolls) and updated in one on PostgreSQL (`payql.db.rows_locked`), what each payment's
`settle` reads is read in one statement, their log rows are one insert and their ledger postings one insert of
transactions and one of entries (`ledger.defer_postings`), and there is one commit (one fsync). A lone delivery
finds no group running and is applied at once, alone. A group that fails (a duplicate delivery, a deadlock, any
error) rolls back and each of its deliveries is applied again in a transaction of its own, as it would have been
alone, so that one delivery's failure is its own. A payment is in one group at a time (two deliveries of one
payment go in turn). One group runs at a time per process: a group
whose payment row another transaction holds waits for it, and the process's next group waits behind it (payql's
transactions hold a payment's row only for their database work, never across a provider call). The log lines of a
group's transaction carry the request context of the delivery whose thread ran it.

The look-ups that come first are grouped the same way (`_look_up_group`), outside any transaction: a lone
delivery's look-up is one Core statement (the log's status and the few columns of the payment the re-fetch
needs), a group's is two for all of its deliveries (their payments by our ids, their log rows), and a delivery
that names its payment by the provider's id only costs one more. The payment is loaded through the ORM once,
locked, in the transaction that applies.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from payql.db import ROW_LOCK, Database, ManyRows, rows_locked
from payql.models import Enroll, Payment, WebhookEvent, Withdrawal, new_id, utcnow
from payql.models.enums import PaymentPurpose, PaymentStatus, ProviderName, WebhookStatus
from payql.providers.base import ObjectKind, ProviderError, ProviderEvent, ProviderPayment
from payql.services import ledger
from payql.services.disputes import DisputeNotReady, DisputeService
from payql.services.enrolls import EnrollService, owed_back
from payql.services.errors import DomainError
from payql.services.grouping import Combiner, Job
from payql.services.payments import PaymentService
from payql.services.payouts import PayoutService

logger = logging.getLogger("payql.webhooks")
KEPT_HEADERS = ("content-type", "user-agent", "stripe-signature", "x-forwarded-for", "x-real-ip")


class Outcome(StrEnum):
    PROCESSED = "processed"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    # The re-fetched object does not show what the (unsigned) notification claims: its state was applied, but the
    # delivery is not settled, so that the genuine notification with the same dedupe key is still processed.
    UNCONFIRMED = "unconfirmed"


class RetryLater(Exception):
    """The event cannot be applied yet (its payment is still being created): answer 500 so it is sent again."""


class _Duplicate(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Delivery:
    provider: ProviderName
    event: ProviderEvent
    body: bytes
    headers: dict[str, str]
    sender_ip: str | None


@dataclass(frozen=True, slots=True)
class Target:
    """What the look-up reads of the payment an event names: what the re-fetch needs. The row itself is loaded
    once, locked, in the transaction that applies the provider's answer."""

    id: str
    provider: ProviderName
    provider_payment_id: str | None
    purpose: PaymentPurpose
    refunded_minor: int


Handler = Callable[[Delivery, Target | None, Callable[[Session, WebhookStatus], None]], Outcome]

_EVENTS = cast("Table", WebhookEvent.__table__)
_PAYMENTS = cast("Table", Payment.__table__)
# Statements built once (the look-up runs on every delivery).
_LOGGED = (
    select(_EVENTS.c.status)
    .where(_EVENTS.c.provider == bindparam("provider"), _EVENTS.c.dedupe_key == bindparam("key"))
    .scalar_subquery()
)
_TARGET = select(
    _LOGGED.label("logged"),
    _PAYMENTS.c.id,
    _PAYMENTS.c.provider,
    _PAYMENTS.c.provider_payment_id,
    _PAYMENTS.c.purpose,
    _PAYMENTS.c.refunded_minor,
)
_BY_ID = _TARGET.where(_PAYMENTS.c.id == bindparam("payment"), _PAYMENTS.c.provider == bindparam("payment_provider"))
_BY_REF = _TARGET.where(
    _PAYMENTS.c.provider == bindparam("payment_provider"), _PAYMENTS.c.provider_payment_id == bindparam("ref")
).limit(1)
_STATUS = select(_LOGGED)
# The look-ups of a group of deliveries (`_look_up_group`): their payments by our ids, and their log rows, one
# provider at a time (the log's unique key leads with the provider).
_PAYMENTS_BY_IDS = select(
    _PAYMENTS.c.id,
    _PAYMENTS.c.provider,
    _PAYMENTS.c.provider_payment_id,
    _PAYMENTS.c.purpose,
    _PAYMENTS.c.refunded_minor,
).where(_PAYMENTS.c.id.in_(bindparam("ids", expanding=True)))
_LOGGED_MANY = select(_EVENTS.c.dedupe_key, _EVENTS.c.status).where(
    _EVENTS.c.provider == bindparam("provider"), _EVENTS.c.dedupe_key.in_(bindparam("keys", expanding=True))
)
_LOCKED_WITH_ENROLLS = (
    select(Payment, Enroll)
    .outerjoin(Enroll, Enroll.id == Payment.enroll_id)
    .where(Payment.id.in_(bindparam("payments", expanding=True)))
    .order_by(Payment.id)
    .with_for_update(of=Payment, **ROW_LOCK)
)
_INSERT_EVENT = insert(_EVENTS).returning(_EVENTS.c.id)  # a group's rows in one statement (see ledger.py)
_INSERT_EVENTS = ManyRows(
    _INSERT_EVENT,
    [
        "id",
        "provider",
        "dedupe_key",
        "event_type",
        "payload",
        "headers",
        "sender_ip",
        "status",
        "error",
        "attempts",
        "received_at",
        "processed_at",
    ],
)
_EVENT_ROWS = "payql_webhook_rows"  # session.info: the delivery rows a group inserts together
# At most this many deliveries apply in one transaction: a group holds its payments' locks until its commit.
GROUP_LIMIT = 32


class _LookUp(Job):
    """One delivery's look-up, to run with others arriving at the same moment (`WebhookService._look_up_group`)."""

    __slots__ = ("delivery", "found")

    def __init__(self, delivery: Delivery) -> None:
        super().__init__()
        self.delivery = delivery
        self.found: tuple[WebhookStatus | None, Target | None] = (None, None)


class _Apply(Job):
    """One delivery's re-fetched payment, to apply in a group (`WebhookService._apply_group`)."""

    __slots__ = ("answer", "owed", "payment_id", "status", "store")

    def __init__(
        self,
        payment_id: str,
        answer: ProviderPayment,
        status: WebhookStatus,
        store: Callable[[Session, WebhookStatus], None],
    ) -> None:
        super().__init__()
        self.payment_id = payment_id
        self.answer = answer
        self.status = status
        self.store = store
        self.owed = False  # set by the group: the payer paid for an enroll cancelled meanwhile


class WebhookService:
    def __init__(
        self,
        db: Database,
        payments: PaymentService,
        payouts: PayoutService,
        enrolls: EnrollService | None = None,
        *,
        disputes: DisputeService | None = None,
    ) -> None:
        self._db = db
        self._payments = payments
        self._payouts = payouts
        self._disputes = disputes
        self._enrolls = enrolls
        # One handler per kind of object, whatever the provider: each re-reads the object and is idempotent by
        # its id. Kinds without a handler (whatever else a provider sends) are recorded and acknowledged.
        self._handlers: dict[ObjectKind, Handler] = {
            ObjectKind.PAYMENT: self._sync_payment,
            ObjectKind.REFUND: self._sync_payment,
            ObjectKind.CHECKOUT_SESSION: self._sync_payment,
            ObjectKind.PAYOUT: self._sync_payout,
        }
        if disputes is not None:
            self._handlers[ObjectKind.DISPUTE] = self._sync_dispute
        self._applies: Combiner[_Apply] = Combiner(self._apply_group, limit=GROUP_LIMIT, key=lambda job: job.payment_id)
        self._look_ups: Combiner[_LookUp] = Combiner(self._look_up_group, limit=GROUP_LIMIT, key=id)
        # Told the size of each group that committed (the app's metrics: `payql_webhook_group_size`).
        self.on_group: Callable[[int], None] | None = None

    def receive(
        self, provider: ProviderName, event: ProviderEvent, body: bytes, headers: dict[str, str], sender_ip: str | None
    ) -> Outcome:
        delivery = Delivery(provider, event, body, headers, sender_ip)
        look_up = _LookUp(delivery)
        self._look_ups.submit(look_up)  # with the look-ups of the deliveries arriving at the same moment
        status, payment = look_up.found
        if status in {WebhookStatus.PROCESSED, WebhookStatus.IGNORED}:
            return Outcome.DUPLICATE
        handler = self._handlers.get(event.kind)

        def store(session: Session, outcome: WebhookStatus) -> None:
            self._store(session, delivery, outcome, None, known_new=status is None)

        try:
            if handler is None or not event.handled:
                logger.info(
                    "%s webhook %s (%s) acknowledged and ignored", provider.value, event.dedupe_key, event.event_type
                )
                self._commit_alone(delivery, WebhookStatus.IGNORED, None)
                return Outcome.IGNORED
            return handler(delivery, payment, store)
        except _Duplicate:
            return Outcome.DUPLICATE
        except Exception as exc:
            self._commit_alone(delivery, WebhookStatus.FAILED, f"{type(exc).__name__}: {exc}"[:2000])
            raise

    # -- the log -----------------------------------------------------------------------------------------

    def _look_up_group(self, jobs: list[_LookUp]) -> None:
        """Look up each delivery (`_look_up`), on one connection. A lone delivery takes one statement when its
        event names a payment of ours by id; a group, two for all of them (their payments, their log rows), and
        one more for each delivery that names its payment by the provider's id only."""
        # Core only (no session to build for a few columns), outside a transaction: each statement stands alone
        with self._db.single_reads() as connection:
            if len(jobs) == 1:
                jobs[0].found = self._look_up(connection, jobs[0].delivery)
                return
            ids = sorted({job.delivery.event.payment_id for job in jobs if job.delivery.event.payment_id})
            payments = {row.id: row for row in connection.execute(_PAYMENTS_BY_IDS, {"ids": ids})} if ids else {}
            logged: dict[tuple[ProviderName, str], WebhookStatus] = {}
            for provider in sorted({job.delivery.provider for job in jobs}):
                keys = sorted({job.delivery.event.dedupe_key for job in jobs if job.delivery.provider is provider})
                rows = connection.execute(_LOGGED_MANY, {"provider": provider, "keys": keys})
                logged.update(((provider, row.dedupe_key), row.status) for row in rows)
            for job in jobs:
                event, provider = job.delivery.event, job.delivery.provider
                row = payments.get(event.payment_id) if event.payment_id else None
                if row is not None and row.provider is not provider:
                    row = None  # our id, but a payment of another provider's
                job.found = self._look_up(
                    connection, job.delivery, known=(logged.get((provider, event.dedupe_key)), row)
                )

    @staticmethod
    def _look_up(
        connection: Connection, delivery: Delivery, known: tuple[WebhookStatus | None, Any] | None = None
    ) -> tuple[WebhookStatus | None, Target | None]:
        """The event's status in the log (None: never seen), and the payment it names: one statement when the
        event names a payment of ours by id, as payql's own metadata makes the common case. `known`: what a
        group's statements read of both already (the payment's row is None when they did not find it by id)."""
        event, provider = delivery.event, delivery.provider
        params: dict[str, Any] = {"provider": provider, "key": event.dedupe_key, "payment_provider": provider}
        row, logged = None, None
        if known is not None:
            logged, row = known
        elif event.payment_id:  # by our id, when the payment is the provider's the event comes from
            row = connection.execute(_BY_ID, {**params, "payment": event.payment_id}).first()
            logged = None if row is None else row.logged
        if row is None and event.payment_ref:  # else by the provider's id
            row = connection.execute(_BY_REF, {**params, "ref": event.payment_ref}).first()
            logged = logged if row is None else row.logged
        if row is None:
            return (logged if known is not None else connection.scalar(_STATUS, params)), None
        if logged in {WebhookStatus.PROCESSED, WebhookStatus.IGNORED}:
            return logged, None
        return logged, _target(row)

    @staticmethod
    def _store(
        session: Session, delivery: Delivery, status: WebhookStatus, error: str | None, *, known_new: bool = False
    ) -> None:
        """Write the delivery's row (or move a failed one on) in the caller's transaction. `known_new`: the log had
        no row a moment ago: one insert, which fails with an IntegrityError (a duplicate) when a concurrent delivery
        of the same event has written the row first."""
        row = None
        if not known_new:
            row = session.scalars(
                select(WebhookEvent)
                .where(WebhookEvent.provider == delivery.provider, WebhookEvent.dedupe_key == delivery.event.dedupe_key)
                .with_for_update(key_share=True)
            ).one_or_none()
        if row is None:  # one Core insert: no ORM object to build and flush
            kept = {name: delivery.headers[name] for name in KEPT_HEADERS if name in delivery.headers}
            now = utcnow()
            values = {
                "id": new_id("whk"),
                "provider": delivery.provider,
                "dedupe_key": delivery.event.dedupe_key,
                "event_type": delivery.event.event_type,
                "payload": delivery.body.decode("utf-8", errors="replace"),
                "headers": json.dumps(kept),
                "sender_ip": delivery.sender_ip,
                "status": status,
                "error": error,
                "attempts": 1,
                "received_at": now,
                "processed_at": now,
            }
            grouped: list[dict[str, Any]] | None = session.info.get(_EVENT_ROWS)
            if grouped is not None:  # `_apply_together` inserts its group's rows in one statement
                grouped.append(values)
            else:
                session.connection().execute(_INSERT_EVENT, values)
            return
        if row.status in {WebhookStatus.PROCESSED, WebhookStatus.IGNORED}:
            raise _Duplicate
        row.attempts += 1  # a retry of a failed delivery
        row.status = status
        row.error = error
        row.processed_at = utcnow()

    def _commit_alone(self, delivery: Delivery, status: WebhookStatus, error: str | None) -> None:
        with self._db.uow() as uow:
            try:
                self._store(uow.session, delivery, status, error)
                uow.commit()
            except (IntegrityError, _Duplicate):
                pass  # a concurrent delivery of the same event recorded it first

    # -- handlers ----------------------------------------------------------------------------------------

    def _by_provider_metadata(self, provider: ProviderName, payment_ref: str) -> Target | None:
        """The payment an event names by a provider id we do not store (a Checkout Session's PaymentIntent, which
        a refund event carries): the provider's payment holds our id in its metadata."""
        try:
            answer = self._payments.provider(provider).retrieve_payment(payment_ref, refunds=False)
        except ProviderError as exc:
            if exc.transient:
                raise
            return None  # not a payment the provider knows: not ours
        if answer.payment_id is None:
            return None
        params = {"provider": provider, "key": "", "payment_provider": provider, "payment": answer.payment_id}
        with self._db.read() as session:
            row = session.connection().execute(_BY_ID, params).first()
        return None if row is None else _target(row)

    def _sync_payout(
        self, delivery: Delivery, _payment: Target | None, _store: Callable[[Session, WebhookStatus], None]
    ) -> Outcome:
        """A payout notification: re-read the payout and settle its withdrawal (COMPLETED, or FAILED with the money
        back in the payable)."""
        event = delivery.event
        with self._db.read() as session:
            withdrawal = session.scalars(
                select(Withdrawal).where(Withdrawal.provider_payout_id == event.object_id)
            ).first()
        if withdrawal is None:
            self._commit_alone(delivery, WebhookStatus.IGNORED, None)
            return Outcome.IGNORED
        answer = self._payouts.provider(delivery.provider).retrieve_payout(event.object_id)
        self._payouts.settle(withdrawal.id, answer)
        confirmed = event.expect is None or answer.status == event.expect
        self._commit_alone(delivery, WebhookStatus.PROCESSED if confirmed else WebhookStatus.RECEIVED, None)
        return Outcome.PROCESSED if confirmed else Outcome.UNCONFIRMED

    def _sync_dispute(
        self, delivery: Delivery, _payment: Target | None, store: Callable[[Session, WebhookStatus], None]
    ) -> Outcome:
        """A dispute notification: re-read the dispute and apply it (its status, its withdrawn and reinstated funds,
        its fee) with the delivery's row in one transaction."""
        assert self._disputes is not None  # noqa: S101 - registered only with a dispute service
        answer = self._payments.provider(delivery.provider).retrieve_dispute(delivery.event.object_id)
        try:
            applied = self._disputes.receive(
                delivery.provider, answer, lambda session: store(session, WebhookStatus.PROCESSED)
            )
        except IntegrityError as exc:
            raise _Duplicate from exc
        except DisputeNotReady as exc:
            raise RetryLater(str(exc)) from exc
        if applied is None:
            logger.info(
                "%s dispute %s names no payment of ours: ignored", delivery.provider.value, answer.provider_dispute_id
            )
            self._commit_alone(delivery, WebhookStatus.IGNORED, None)
            return Outcome.IGNORED
        return Outcome.PROCESSED

    def _sync_payment(
        self, delivery: Delivery, payment: Target | None, store: Callable[[Session, WebhookStatus], None]
    ) -> Outcome:
        event = delivery.event
        # A signed event may name the provider's payment by an id we do not store; an unsigned notification (one
        # that `expect`s something) is not worth a provider call until it names a payment of ours.
        lookup = event.expect is None and event.kind in {ObjectKind.PAYMENT, ObjectKind.REFUND}
        if payment is None and event.payment_ref and lookup:
            payment = self._by_provider_metadata(delivery.provider, event.payment_ref)
        if payment is None:
            logger.info("%s event %s names no payment of ours: ignored", delivery.provider.value, event.dedupe_key)
            self._commit_alone(delivery, WebhookStatus.IGNORED, None)
            return Outcome.IGNORED
        provider_id = payment.provider_payment_id
        if provider_id is None:
            if payment.purpose is PaymentPurpose.PACKAGE and event.kind is not ObjectKind.CHECKOUT_SESSION:
                raise RetryLater(f"payment {payment.id} is still being created")
            provider_id = event.payment_ref
        if provider_id is None:
            raise RetryLater(f"payment {payment.id} has no provider id yet")
        # The refund list costs a second provider request; a payment event needs it only when payql holds a refund
        # that succeeded (it may have failed late since). Pending refunds and refunds made elsewhere arrive with
        # their own events, and `payql reconcile` reads every list.
        refunds = event.touches_refunds or event.kind is ObjectKind.REFUND or payment.refunded_minor > 0
        answer = self._payments.provider(payment.provider).retrieve_payment(provider_id, refunds=refunds)
        confirmed = _confirms(event, answer)
        # The delivery's row and the payment's new state commit together, in one transaction with whatever other
        # deliveries this process has ready at the same moment (`_apply_group`).
        job = _Apply(payment.id, answer, WebhookStatus.PROCESSED if confirmed else WebhookStatus.RECEIVED, store)
        self._applies.submit(job)
        owed = job.owed
        if owed:
            self._give_back(payment.id)
        if not confirmed:
            logger.warning(
                "%s notification %s claims %s, the provider says %s: not settled",
                delivery.provider.value,
                event.dedupe_key,
                event.expect,
                answer.raw_status,
            )
            return Outcome.UNCONFIRMED
        return Outcome.PROCESSED

    def _apply_group(self, jobs: list[_Apply]) -> None:
        """Apply re-fetched payments and record their deliveries, all in one transaction (one commit); if that
        fails (a duplicate delivery, a deadlock, any error), each again in a transaction of its own, so that one
        delivery's failure is its own and the others commit."""
        if len(jobs) > 1:
            try:
                self._apply_together(jobs)
            except Exception as exc:  # noqa: BLE001 - nothing was written: each is tried alone below
                logger.info(
                    "a group of %d webhook deliveries rolled back (%s): each is applied alone",
                    len(jobs),
                    type(exc).__name__,
                )
            else:
                return
        for job in jobs:
            try:
                self._apply_together([job])
            except Exception as exc:  # noqa: BLE001 - raised in the thread that submitted the job
                job.error = exc

    def _apply_together(self, jobs: list[_Apply]) -> None:
        with self._db.uow() as uow:
            session = uow.session
            # The payments, locked in id order (one order for every group), with their enrolls (not locked), in one
            # statement. The enrolls are held here so that `apply` (which reads them) finds them in the session,
            # not in the database again: the session keeps unchanged rows only while something references them.
            ids = sorted(job.payment_id for job in jobs)
            rows = session.execute(_LOCKED_WITH_ENROLLS, {"payments": ids}).all()
            rows_locked(session, "payments")  # so that their updates may go in one statement (`payql.db`)
            found = {row[0].id: (row[0], row[1]) for row in rows}
            if len(jobs) > 1:
                # A group reads what each payment's `settle` reads in one statement, and writes its postings in
                # one insert each of transactions and entries at the commit (a failed commit is the group's: it
                # runs again one by one, without either).
                self._payments.lifecycle.read_ahead(session, ids)
                ledger.defer_postings(session)
            for job in jobs:
                if job.payment_id not in found:  # pragma: no cover - payments are never deleted
                    raise RetryLater(f"payment {job.payment_id} vanished")
                locked, enroll = found[job.payment_id]
                self._payments.lifecycle.apply(session, locked, job.answer)
                # Whether the payer paid for an enroll cancelled meanwhile, read under the payment's lock: only
                # then does giving it back need a transaction of its own.
                paid = job.answer.status in {PaymentStatus.AUTHORIZED, PaymentStatus.SUCCEEDED}
                job.owed = paid and enroll is not None and owed_back(locked, enroll)
            inserts: list[dict[str, Any]] = []
            session.info[_EVENT_ROWS] = inserts
            try:
                for job in jobs:
                    job.store(session, job.status)
                if inserts:
                    _INSERT_EVENTS.execute(session.connection(), inserts)
                uow.commit()
            except IntegrityError as exc:  # a delivery's row: a concurrent delivery of the same event wrote it
                raise _Duplicate from exc
        if self.on_group is not None:
            self.on_group(len(jobs))

    def _give_back(self, payment_id: str) -> None:
        """The payer paid for an enroll cancelled while its payment was unpaid: void or refund it now. The delivery
        is settled already; if the provider cannot be reached, the enroll's pending cancellation is left for
        `payql reconcile`."""
        if self._enrolls is None:
            return
        try:
            if self._enrolls.give_back(payment_id):
                logger.info("payment %s was paid after its enroll was cancelled: given back", payment_id)
        except (ProviderError, DomainError) as exc:
            # The provider's code says which failure it was (a timeout, a dropped connection, an error answer).
            why = f" ({exc.provider_code})" if isinstance(exc, ProviderError) and exc.provider_code else ""
            logger.warning(
                "payment %s paid after its enroll was cancelled, not given back yet: %s%s", payment_id, exc, why
            )


def _target(row: Any) -> Target:
    return Target(row.id, row.provider, row.provider_payment_id, row.purpose, row.refunded_minor)


def _confirms(event: ProviderEvent, answer: ProviderPayment) -> bool:
    """Whether the re-fetched state shows what the event claims (events that claim nothing always do)."""
    if event.expect is None:
        return True
    if event.kind is ObjectKind.REFUND:
        return any(
            refund.provider_refund_id == event.object_id and refund.status.value == event.expect
            for refund in answer.refunds
        )
    if event.kind is ObjectKind.PAYMENT:
        return answer.raw_status == event.expect
    return True
