"""`payql reconcile`: finish what a crash or an outage left between a provider call and its second transaction.

Every provider call is intent, call, apply (DESIGN.md §6). When the process dies after the call and before the
apply, or the call times out and the caller never retries, the intent stays behind:

- a payment PENDING with no provider id (creation): sent again with the same provider key, so the provider replays
  what it made (or makes it now) and the answer is applied;
- an enroll with a pending completion or cancellation: its payment is re-fetched first, then only what is still
  missing is asked for again (capture, void, or the cancellation's refund), with the same keys;
- a refund PENDING with no provider id: sent again with the same key;
- a withdrawal PROCESSING: its payout sent again with the same key, or re-fetched;
- payments waiting on the payer (up to a week old), pending refunds whose webhook never came, and payments with a
  refund that succeeded within `RECONCILE_LOOKBACK_DAYS` (a provider may fail a refund weeks later): re-fetched and
  applied;
- every open dispute (`DisputeService.open_ids`: not closed, or won with its funds not yet reinstated): re-read and
  applied through `DisputeService.receive`, the path webhooks take, so a withdrawal, a close or a reinstatement
  whose event was lost is booked once; with `full`, also every dispute the providers opened within the lookback
  window (one paged list per provider), so a dispute none of whose events arrived is found.

`report()` (`payql reconcile --report`) changes nothing: it re-reads every payment and withdrawal of the lookback
window (and every open one), every dispute opened in that window and every open one, applies each answer through
the same path as `run()` inside a unit of work that is rolled back (`Database.dry_run`), and lists what that would
have written: every difference between payql's books and the provider's records. Intents left unfinished are
listed too.

Only rows untouched for `RECONCILE_AFTER_SECONDS` (far longer than `PROVIDER_TIMEOUT_MS`) are taken, so reconcile
never races a request still waiting on its provider; on PostgreSQL an advisory lock lets one replica run it at a
time. Every step is idempotent: running reconcile twice, or alongside retries, moves no money twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Select, select, text, union

from payql import batches
from payql.batches import DEFAULT_CONCURRENCY
from payql.db import Database
from payql.models import Enroll, Payment, PayoutAccount, Refund, Withdrawal, utcnow
from payql.models.enums import PaymentStatus, ProviderName, RefundStatus, WithdrawalStatus
from payql.models.payment import UNSENT
from payql.providers.base import ProviderDispute, ProviderError, ProviderPayout
from payql.services.disputes import DisputeNotReady, DisputeService
from payql.services.enrolls import EnrollService
from payql.services.errors import DomainError
from payql.services.jobs import exclusive
from payql.services.payments import PaymentService
from payql.services.payouts import PayoutService
from payql.services.refunds import RefundService

logger = logging.getLogger("payql.reconcile")

# Payments waiting on the payer, which the provider moves without us hearing of it when a webhook never comes. Only
# those touched within RESYNC_WINDOW are re-fetched, newest first: an intent abandoned for a week is not asked about
# on every run for ever. (Held payments move by our own capture or void, or `payql holds expire`.)
WAITING = (PaymentStatus.PENDING, PaymentStatus.REQUIRES_ACTION, PaymentStatus.PROCESSING)
RESYNC_WINDOW = timedelta(days=7)


@dataclass(slots=True)
class ReconcileReport:
    checked: int = 0  # objects compared with their provider
    differences: list[str] = field(default_factory=list)
    failed: int = 0  # objects the provider could not answer now
    problems: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ReconcileRun:
    created: int = 0  # payment creations resumed
    enrolls: int = 0  # completions and cancellations finished
    refunds: int = 0  # refunds resumed
    payouts: int = 0  # withdrawals in flight sent again or re-fetched
    refreshed: int = 0  # open payments re-fetched whose state changed
    disputes: int = 0  # open disputes re-read whose state or books changed
    failed: int = 0  # items the provider could not answer now: the next run retries them
    skipped: bool = False  # another replica holds the job's lock
    problems: list[str] = field(default_factory=list)
    concurrency: int = 1  # objects finished at once within a step (`--concurrency`)


class Reconciler:
    def __init__(
        self,
        db: Database,
        payments: PaymentService,
        refunds: RefundService,
        enrolls: EnrollService,
        payouts: PayoutService,
        disputes: DisputeService,
        older_than: timedelta,
        lookback: timedelta = timedelta(days=120),
    ) -> None:
        self._db = db
        self._payments = payments
        self._refunds = refunds
        self._enrolls = enrolls
        self._payouts = payouts
        self._disputes = disputes
        self._older_than = older_than
        self._lookback = lookback

    def run(
        self,
        *,
        older_than: timedelta | None = None,
        now: datetime | None = None,
        limit: int = 1000,
        full: bool = False,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> ReconcileRun:
        """Finish what was left and re-read what is open; `full` also re-reads everything `report()` compares.

        The steps run one after the other, in this order; within a step at most `concurrency` objects are finished
        at once (payql/batches.py), each by the same code as at concurrency 1."""
        batches.check_concurrency(concurrency)
        cutoff = (now or utcnow()) - (self._older_than if older_than is None else older_than)
        with exclusive(self._db, "reconcile") as mine:
            if not mine:
                return ReconcileRun(skipped=True)
            run = ReconcileRun(concurrency=concurrency)
            # Enroll intents first: finishing them captures, voids or refunds, which later steps would only re-read.
            run.enrolls = self._each(run, "enroll", self._ids(self._pending_enrolls(cutoff), limit), self._enroll)
            run.created = self._each(run, "payment", self._ids(self._unsent_payments(cutoff), limit), self._create)
            run.refunds = self._each(run, "refund", self._ids(self._unsent_refunds(cutoff), limit), self._refund)
            run.payouts = self._each(run, "withdrawal", self._ids(self._payouts_in_flight(cutoff), limit), self._payout)
            since = (now or utcnow()) - self._lookback
            listed: dict[str, tuple[ProviderName, ProviderDispute]] = {}
            if full:  # what `report()` compares: every payment and payout of the window
                waiting = self._ids(self._payments_in_window(cutoff, since), limit)
                settled = self._ids(self._payouts_in_window(cutoff, since), limit)
                run.payouts += self._each(run, "withdrawal", settled, self._refresh_payout)
                found = self._listed(run.problems, since, limit)
                run.failed += found is None
                listed = found or {}
            else:
                waiting = self._ids(self._waiting_payments(cutoff, since), limit)
            run.refreshed = self._each(run, "payment", waiting, self._refresh)
            # Last: a dispute on a payment whose capture was only now learned books against that capture. A dispute
            # the list brought is applied from it (one provider call per object and run); the others are re-read.
            run.disputes = self._each(run, "dispute", listed, lambda label: self._receive(*listed[label]))
            reread = [dispute_id for dispute_id in self._disputes.open_ids(limit) if dispute_id not in listed]
            run.disputes += self._each(run, "dispute", reread, self._disputes.refresh)
            return run

    def report(
        self,
        *,
        older_than: timedelta | None = None,
        now: datetime | None = None,
        limit: int = 1000,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> ReconcileReport:
        """Every difference between payql and its providers in the lookback window; changes nothing. At most
        `concurrency` objects are compared at once; the differences are listed in the same order at any."""
        batches.check_concurrency(concurrency)
        moment = now or utcnow()
        cutoff = moment - (self._older_than if older_than is None else older_than)
        since = moment - self._lookback
        report = ReconcileReport()
        unfinished = (
            ("enroll", self._pending_enrolls(cutoff), "a completion or cancellation is unfinished"),
            ("payment", self._unsent_payments(cutoff), "its creation was never confirmed by the provider"),
            ("refund", self._unsent_refunds(cutoff), "it was never confirmed by the provider"),
            ("withdrawal", self._unsent_payouts(cutoff), "its payout was never confirmed by the provider"),
        )
        for kind, query, what in unfinished:
            report.differences.extend(f"{kind} {object_id}: {what}" for object_id in self._ids(query, limit))
        payments = self._ids(self._payments_in_window(cutoff, since), limit)
        self._compare(report, "payment", payments, self._compare_payment, concurrency)
        withdrawals = self._ids(self._payouts_in_window(cutoff, since), limit)
        self._compare(report, "withdrawal", withdrawals, self._compare_payout, concurrency)
        found = self._listed(report.problems, since, limit)
        report.failed += found is None
        listed = found or {}
        self._compare(report, "dispute", list(listed), lambda key: self._dry_receive(*listed[key]), concurrency)
        reread = [dispute_id for dispute_id in self._disputes.open_ids(limit) if dispute_id not in listed]
        self._compare(report, "dispute", reread, self._compare_dispute, concurrency)
        return report

    # -- what is left behind ---------------------------------------------------------------------------------

    @staticmethod
    def _pending_enrolls(cutoff: datetime) -> Select[str]:
        return (
            select(Enroll.id)
            .where(Enroll.pending_action.is_not(None), Enroll.pending_since < cutoff)
            .order_by(Enroll.pending_since)
        )

    @staticmethod
    def _unsent_payments(cutoff: datetime) -> Select[str]:
        return (
            select(Payment.id)
            .where(text(UNSENT), Payment.updated_at < cutoff)  # ix_payments_unsent: only those
            .order_by(Payment.updated_at)
        )

    @staticmethod
    def _unsent_refunds(cutoff: datetime) -> Select[str]:
        return (
            select(Refund.id)
            .where(
                Refund.status == RefundStatus.PENDING,
                Refund.provider_refund_id.is_(None),
                Refund.updated_at < cutoff,
            )
            .order_by(Refund.updated_at)
        )

    @staticmethod
    def _payouts_in_flight(cutoff: datetime) -> Select[str]:
        return (
            select(Withdrawal.id)
            .where(Withdrawal.status == WithdrawalStatus.PROCESSING, Withdrawal.updated_at < cutoff)
            .order_by(Withdrawal.updated_at)
        )

    @staticmethod
    def _waiting_payments(cutoff: datetime, since: datetime) -> Select[str]:
        refund_to_check = (
            select(Refund.payment_id)
            .where(
                Refund.provider_refund_id.is_not(None),
                Refund.updated_at < cutoff,
                (Refund.status == RefundStatus.PENDING)
                | ((Refund.status == RefundStatus.SUCCEEDED) & (Refund.updated_at > since)),
            )
            .scalar_subquery()
        )
        # Two scans, each on its index ((status, updated_at) and the refunds'), not one OR that no index serves.
        waiting = select(Payment.id, Payment.updated_at).where(
            Payment.provider_payment_id.is_not(None),
            Payment.status.in_(WAITING),
            Payment.updated_at < cutoff,
            Payment.updated_at > cutoff - RESYNC_WINDOW,
        )
        refunded = select(Payment.id, Payment.updated_at).where(
            Payment.provider_payment_id.is_not(None), Payment.id.in_(refund_to_check)
        )
        both = union(waiting, refunded).subquery()
        return select(both.c.id).order_by(both.c.updated_at.desc())

    @staticmethod
    def _payments_in_window(cutoff: datetime, since: datetime) -> Select[str]:
        """For the report: every payment the provider knows that moved in the window, is open, or has a refund
        that moved in the window or is open."""
        refunds = (
            select(Refund.payment_id)
            .where((Refund.updated_at > since) | (Refund.status == RefundStatus.PENDING))
            .scalar_subquery()
        )
        return (
            select(Payment.id)
            .where(
                Payment.provider_payment_id.is_not(None),
                Payment.updated_at < cutoff,
                (Payment.updated_at > since) | Payment.status.in_(WAITING) | Payment.id.in_(refunds),
            )
            .order_by(Payment.updated_at.desc())
        )

    @staticmethod
    def _unsent_payouts(cutoff: datetime) -> Select[str]:
        return (
            select(Withdrawal.id)
            .where(
                Withdrawal.status == WithdrawalStatus.PROCESSING,
                Withdrawal.provider_payout_id.is_(None),
                Withdrawal.updated_at < cutoff,
            )
            .order_by(Withdrawal.updated_at)
        )

    @staticmethod
    def _payouts_in_window(cutoff: datetime, since: datetime) -> Select[str]:
        return (
            select(Withdrawal.id)
            .where(
                Withdrawal.provider_payout_id.is_not(None),
                Withdrawal.updated_at < cutoff,
                (Withdrawal.updated_at > since) | (Withdrawal.status == WithdrawalStatus.PROCESSING),
            )
            .order_by(Withdrawal.updated_at.desc())
        )

    def _ids(self, query: Select[str], limit: int) -> list[str]:
        with self._db.read() as session:
            return list(session.scalars(query.limit(limit)))

    # -- finishing each ---------------------------------------------------------------------------------------

    def _enroll(self, enroll_id: str) -> bool:
        return self._enrolls.resume(enroll_id) is not None

    def _create(self, payment_id: str) -> bool:
        return self._payments.resume_creation(payment_id).provider_payment_id is not None

    def _refund(self, refund_id: str) -> bool:
        self._refunds.resume(refund_id)
        return True

    def _payout(self, withdrawal_id: str) -> bool:
        with self._db.read() as session:
            withdrawal = session.get(Withdrawal, withdrawal_id)
        if withdrawal is None:  # pragma: no cover - never deleted
            return False
        self._payouts.send(withdrawal)
        return True

    def _read_payout(self, withdrawal_id: str) -> tuple[WithdrawalStatus, ProviderPayout] | None:
        """A withdrawal's status here and its payout as the provider sees it now."""
        with self._db.read() as session:
            withdrawal = session.get(Withdrawal, withdrawal_id)
            account = session.get(PayoutAccount, withdrawal.payout_account_id) if withdrawal is not None else None
        if withdrawal is None or withdrawal.provider_payout_id is None or account is None:  # pragma: no cover
            return None
        provider = self._payouts.provider(account.provider)
        return withdrawal.status, provider.retrieve_payout(withdrawal.provider_payout_id)

    def _refresh_payout(self, withdrawal_id: str) -> bool:
        read = self._read_payout(withdrawal_id)
        return read is not None and self._payouts.settle(withdrawal_id, read[1]) is not read[0]

    def _refresh(self, payment_id: str) -> bool:
        return self._payments.refresh(payment_id)

    # -- comparing, for the report -------------------------------------------------------------------------------

    def _compare_payment(self, payment_id: str) -> list[str]:
        with self._db.read() as session:
            payment = session.get(Payment, payment_id)
        if payment is None or payment.provider_payment_id is None:  # pragma: no cover - selected with an id
            return []
        answer = self._payments.provider(payment.provider).retrieve_payment(payment.provider_payment_id)
        with self._db.dry_run() as changes:
            self._payments.apply_answer(payment_id, answer)
        return changes

    def _compare_payout(self, withdrawal_id: str) -> list[str]:
        read = self._read_payout(withdrawal_id)
        if read is None:  # pragma: no cover - selected with a payout id
            return []
        with self._db.dry_run() as changes:
            self._payouts.settle(withdrawal_id, read[1])
        return changes

    def _compare_dispute(self, dispute_id: str) -> list[str]:
        read = self._disputes.reread(dispute_id)
        if read is None:  # pragma: no cover - disputes are never deleted
            return []
        return self._dry_receive(*read)

    def _receive(self, provider: ProviderName, answer: ProviderDispute) -> bool:
        return bool(self._disputes.receive(provider, answer))

    def _dry_receive(self, provider: ProviderName, answer: ProviderDispute) -> list[str]:
        with self._db.dry_run() as changes:
            self._disputes.receive(provider, answer)
        return changes

    def _listed(
        self, problems: list[str], since: datetime, limit: int
    ) -> dict[str, tuple[ProviderName, ProviderDispute]] | None:
        """The disputes the providers opened in the window, by payql's id (the provider's for one payql has not
        heard of); None, with a problem noted, when a provider could not list them now."""
        try:
            found = self._disputes.listed(since, limit)
        except ProviderError as exc:
            problems.append(f"disputes: the provider could not list them ({exc.code})")
            logger.warning("reconcile: the disputes could not be listed: %s", exc)
            return None
        return {
            self._disputes.id_of(provider, answer.provider_dispute_id) or answer.provider_dispute_id: (provider, answer)
            for provider, answer in found
        }

    @staticmethod
    def _compare(
        report: ReconcileReport,
        kind: str,
        ids: Iterable[str],
        compare: Callable[[str], list[str]],
        concurrency: int,
    ) -> None:
        """Compare each object (on up to `concurrency` threads); the report is written here, in the order of `ids`."""
        for object_id, outcome in batches.each(ids, compare, concurrency):
            report.checked += 1
            try:
                changes = outcome.result()
            except ProviderError as exc:
                report.failed += 1
                report.problems.append(f"{kind} {object_id}: the provider did not answer ({exc.code})")
                continue
            except DisputeNotReady as exc:
                report.failed += 1
                report.problems.append(f"{kind} {object_id}: {exc}")
                continue
            except Exception:  # one broken row must not hide the others
                report.failed += 1
                report.problems.append(f"{kind} {object_id}: unexpected error (logged)")
                logger.exception("reconcile --report: %s %s failed", kind, object_id)
                continue
            report.differences.extend(f"{kind} {object_id}: {change}" for change in changes)

    @staticmethod
    def _each(run: ReconcileRun, kind: str, ids: Iterable[str], finish: Callable[[str], bool]) -> int:
        """One step: `finish` each object, `run.concurrency` at a time; counted here (one thread), in order of
        `ids`. Returns how many `finish` reported done; failures go to `run.failed` and `run.problems`."""
        done = 0
        for object_id, outcome in batches.each(ids, finish, run.concurrency):
            try:
                done += outcome.result()
            except (ProviderError, DomainError, DisputeNotReady) as exc:
                # a provider outage, or a refusal: logged and counted; the next run tries again
                run.failed += 1
                run.problems.append(f"{kind} {object_id}: {exc}")
                logger.warning("reconcile: %s %s not finished: %s", kind, object_id, exc)
            except Exception:  # one broken row must not stop the others from being finished
                run.failed += 1
                run.problems.append(f"{kind} {object_id}: unexpected error (logged)")
                logger.exception("reconcile: %s %s failed", kind, object_id)
        return done
