"""Provider payouts (seeds/001 and 003): payout accounts, withdrawals with a minimum, the weekly payout batch.

- A provider registers a payout account (a Stripe Connect account `acct_…`, or a YooKassa payout token /
  `wallet:<number>`); an admin verifies or rejects it. Only verified accounts are paid.
- `requestWithdrawal` takes at least `PAYOUT_MINIMUM` and at most what is available, never while the payable is
  negative, and moves the amount from `payable` to `payouts_in_flight` at once (under the payable account's row lock),
  so it cannot be requested twice. An admin approves or rejects it (a rejection gives the money back).
- `payql payouts run` sends every approved withdrawal through its provider with a stable key per withdrawal
  (PROCESSING), and settles it when the provider confirms: COMPLETED (`payouts_in_flight → provider_cash`), or FAILED
  (the money goes back to `payable`). `--auto-approve` (the weekly run) first makes one approved withdrawal per
  verified provider whose available balance reaches the minimum, once per ISO week (a unique constraint). A run keeps
  at most `--concurrency` provider calls in flight (payql/batches.py) and writes `GROUP` withdrawals per transaction;
  each withdrawal is still one intent committed before its call, one key and one call, and two runs that overlap
  send the same key (the provider answers the second with the first's payout).
- A payout the provider refuses definitively (`PayoutRefused`: a 4xx other than a rate limit) fails at once with
  `failure_reason`; a transient failure leaves it PROCESSING and the next run sends the same key again. A COMPLETED
  payout the provider reverses or cancels later becomes FAILED and `payout_reversed` undoes its settlement.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, TypedDict, TypeVar, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from payql import batches
from payql.auth import Principal
from payql.batches import DEFAULT_CONCURRENCY
from payql.db import ROW_LOCK, Database, dry_running
from payql.faults import crash_point
from payql.models import PLATFORM, AccountKind, LedgerAccount, PayoutAccount, Withdrawal, new_id, utcnow
from payql.models.enums import PayoutAccountStatus, ProviderName, WithdrawalStatus
from payql.money import Money, MoneyError, exponent, parse_amount
from payql.providers.base import PaymentProvider, PayoutRefused, ProviderError, ProviderPayout
from payql.services import ledger, postings, text
from payql.services.errors import Forbidden, InsufficientFunds, InvalidInput, InvalidState, NotFound
from payql.services.idempotency import IdempotencyService, derived_id
from payql.services.jobs import exclusive
from payql.settings import Settings

logger = logging.getLogger("payql.payouts")
DEFAULT_CURRENCY = {ProviderName.STRIPE: "USD", ProviderName.YOOKASSA: "RUB"}
OPEN = (WithdrawalStatus.PENDING, WithdrawalStatus.APPROVED)
# payql's own `failureReason` texts, when the provider gives no short code
REFUSED = "the provider refused the payout"
CANCELED = "the provider canceled the payout"
REVERSED = "the provider reversed the payout"
FAILURE_REASON_LENGTH = 200  # withdrawals.failure_reason
# Withdrawals written per transaction by the payout run: one commit (one fsync on SQLite) for each group of intents,
# approvals or answers, where one per withdrawal made the database, not the provider, the limit of a run.
GROUP = 32
T = TypeVar("T")
# The payout run's statements, built once (SQLAlchemy Core: the ORM's bookkeeping per withdrawal cost more than the
# statements); the ORM still serves everything else, and the rare answers (refusals, failures, reversals).
_WITHDRAWALS = cast("Table", Withdrawal.__table__)
_ACCOUNTS = cast("Table", PayoutAccount.__table__)
_LEDGER_ACCOUNTS = cast("Table", LedgerAccount.__table__)
_TO_PAY = (
    select(
        _WITHDRAWALS.c.id,
        _WITHDRAWALS.c.status,
        _WITHDRAWALS.c.amount_minor,
        _WITHDRAWALS.c.currency,
        _WITHDRAWALS.c.provider_key,
        _WITHDRAWALS.c.provider_payout_id,
        _ACCOUNTS.c.provider,
        _ACCOUNTS.c.external_account_id,
    )
    .join(_ACCOUNTS, _ACCOUNTS.c.id == _WITHDRAWALS.c.payout_account_id)
    .where(_WITHDRAWALS.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(_WITHDRAWALS.c.id)
    .with_for_update(of=_WITHDRAWALS, **ROW_LOCK)
)
_MARK_PROCESSING = (
    update(_WITHDRAWALS)
    .where(
        _WITHDRAWALS.c.id.in_(bindparam("ids", expanding=True)),
        _WITHDRAWALS.c.status == WithdrawalStatus.APPROVED,
    )
    .values(status=WithdrawalStatus.PROCESSING)
)
_ANSWERED = (
    select(
        _WITHDRAWALS.c.id,
        _WITHDRAWALS.c.user_id,
        _WITHDRAWALS.c.status,
        _WITHDRAWALS.c.amount_minor,
        _WITHDRAWALS.c.currency,
        _WITHDRAWALS.c.provider_payout_id,
    )
    .where(_WITHDRAWALS.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(_WITHDRAWALS.c.id)
    .with_for_update(**ROW_LOCK)
)
_COMPLETE = update(_WITHDRAWALS).where(_WITHDRAWALS.c.id == bindparam("withdrawal"))
_PAYABLES = (
    select(_LEDGER_ACCOUNTS.c.owner_id, _LEDGER_ACCOUNTS.c.currency, _LEDGER_ACCOUNTS.c.balance_minor)
    .where(
        _LEDGER_ACCOUNTS.c.owner_id.in_(bindparam("owners", expanding=True)),
        _LEDGER_ACCOUNTS.c.kind == AccountKind.PAYABLE,
    )
    .order_by(_LEDGER_ACCOUNTS.c.id)
    .with_for_update(**ROW_LOCK)
)
_MADE_THIS_PERIOD = select(_WITHDRAWALS.c.user_id, _WITHDRAWALS.c.currency).where(
    _WITHDRAWALS.c.user_id.in_(bindparam("owners", expanding=True)), _WITHDRAWALS.c.period == bindparam("period")
)


@dataclass(frozen=True, slots=True)
class PayoutRun:
    created: int = 0
    completed: int = 0
    failed: int = 0
    pending: int = 0
    skipped: bool = False


def available(session: Session, user_id: str, currency: str, *, lock: bool = False) -> int:
    """What the provider can withdraw now: their payable account, shown positive (negative after a refund that
    followed a payout)."""
    return -ledger.balance_of(session, user_id, AccountKind.PAYABLE, currency, lock=lock)


class PayoutService:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        providers: dict[ProviderName, PaymentProvider],
        idempotency: IdempotencyService,
    ) -> None:
        self._db = db
        self._settings = settings
        self._providers = providers
        self._idempotency = idempotency

    def provider(self, name: ProviderName) -> PaymentProvider:
        return self._providers[name]

    def minimum(self, currency: str) -> Money:
        """`PAYOUT_MINIMUM` in `currency` ("50.00" is 50 JPY: the decimals a currency cannot have are dropped)."""
        text = self._settings.payout_minimum
        try:
            return parse_amount(text, currency)
        except MoneyError:
            whole, _, fraction = text.partition(".")
            return parse_amount(f"{whole}.{fraction[: exponent(currency)]}".rstrip("."), currency)

    # -- accounts ----------------------------------------------------------------------------------------

    def register_account(
        self, principal: Principal, provider: ProviderName, external_id: str, currency: str | None
    ) -> PayoutAccount:
        if not principal.is_provider:
            raise Forbidden("only providers register payout accounts")
        external_id = external_id.strip()
        if provider is ProviderName.STRIPE and not external_id.startswith("acct_"):
            raise InvalidInput("a Stripe payout account is a Connect account id (acct_…)", field="externalAccountId")
        if not 0 < len(external_id) <= text.EXTERNAL_ACCOUNT_ID:
            raise InvalidInput(
                f"externalAccountId must be 1 to {text.EXTERNAL_ACCOUNT_ID} characters", field="externalAccountId"
            )
        code = (currency or DEFAULT_CURRENCY[provider]).strip().upper()
        try:
            exponent(code)
        except MoneyError as exc:
            raise InvalidInput(exc.message, field="currency") from exc
        with self._db.uow() as uow:
            existing = uow.session.scalars(
                select(PayoutAccount).where(
                    PayoutAccount.user_id == principal.user_id,
                    PayoutAccount.provider == provider,
                    PayoutAccount.external_account_id == external_id,
                )
            ).one_or_none()
            if existing is not None:
                return existing  # registering the same account again changes nothing
            account = PayoutAccount(
                id=new_id("pac"),
                user_id=principal.user_id,
                provider=provider,
                external_account_id=external_id,
                currency=code,
            )
            uow.session.add(account)
            uow.commit()
            return account

    def review_account(self, principal: Principal, account_id: str, *, verified: bool) -> PayoutAccount:
        with self._db.uow() as uow:
            account = uow.session.get(PayoutAccount, account_id, with_for_update=ROW_LOCK)
            if account is None or not (principal.is_admin or account.user_id == principal.user_id):
                raise NotFound("payout account not found", field="id")
            if not principal.is_admin:
                raise Forbidden("only an admin verifies payout accounts")
            if account.user_id == principal.user_id:  # separation of duties
                raise Forbidden("an admin cannot verify their own payout account")
            account.status = PayoutAccountStatus.VERIFIED if verified else PayoutAccountStatus.REJECTED
            account.verified_at = utcnow() if verified else None
            uow.commit()
            return account

    # -- withdrawals -------------------------------------------------------------------------------------

    def request(self, principal: Principal, amount: Money, key: str | None) -> Withdrawal:
        return self._idempotency.run(
            user_id=principal.user_id,
            operation="requestWithdrawal",
            key=key,
            request={"amount": [amount.minor, amount.currency]},
            execute=lambda seed: self._request(principal, amount, derived_id("wdr", seed)),
            encode=lambda withdrawal: {"withdrawal_id": withdrawal.id},
            decode=self._replay,
        )

    def _replay(self, stored: dict[str, str]) -> Withdrawal:
        with self._db.read() as session:
            withdrawal = session.get(Withdrawal, stored["withdrawal_id"])
            if withdrawal is None:  # pragma: no cover - never deleted
                raise NotFound("withdrawal not found")
            return withdrawal

    def _request(self, principal: Principal, amount: Money, withdrawal_id: str) -> Withdrawal:
        if not principal.is_provider:
            raise Forbidden("only providers withdraw earnings")
        minimum = self.minimum(amount.currency)
        if amount.minor < minimum.minor:
            raise InvalidInput(f"the smallest withdrawal is {minimum.format()} {amount.currency}", field="amount")
        with self._db.uow() as uow:
            session = uow.session
            if (known := session.get(Withdrawal, withdrawal_id)) is not None:
                return known
            account = self._verified_account(session, principal.user_id, amount.currency)
            withdrawal = self._open(session, account, amount.minor, None, WithdrawalStatus.PENDING, withdrawal_id)
            uow.commit()
            return withdrawal

    @staticmethod
    def _verified_account(session: Session, user_id: str, currency: str) -> PayoutAccount:
        account = session.scalars(
            select(PayoutAccount)
            .where(
                PayoutAccount.user_id == user_id,
                PayoutAccount.currency == currency,
                PayoutAccount.status == PayoutAccountStatus.VERIFIED,
            )
            .order_by(PayoutAccount.verified_at)
        ).first()
        if account is None:
            raise InvalidState(f"there is no verified payout account in {currency}", field="amount")
        return account

    @staticmethod
    def _open(
        session: Session,
        account: PayoutAccount,
        amount: int,
        period: str | None,
        status: WithdrawalStatus,
        withdrawal_id: str | None = None,
        *,
        left: int | None = None,
    ) -> Withdrawal:
        """Take `amount` out of the payable (locked) into payouts in flight, with its withdrawal. `left` is what is
        available, when the caller read it under the lock already."""
        if left is None:
            left = available(session, account.user_id, account.currency, lock=True)
        if left <= 0 or amount > left:
            shown = Money(max(left, 0), account.currency).format()
            raise InsufficientFunds(f"{shown} {account.currency} available to withdraw", field="amount")
        withdrawal = Withdrawal(
            id=withdrawal_id or new_id("wdr"),
            user_id=account.user_id,
            payout_account_id=account.id,
            amount_minor=amount,
            currency=account.currency,
            status=status,
            period=period,
        )
        withdrawal.provider_key = f"payql-{withdrawal.id}-payout"
        session.add(withdrawal)
        session.flush()
        lines = postings.withdrawal(withdrawal.user_id, withdrawal.currency, withdrawal.amount_minor)
        ledger.post(session, "withdrawal", "withdrawal", withdrawal.id, lines)
        return withdrawal

    def review(self, principal: Principal, withdrawal_id: str, *, approve: bool, reason: str | None) -> Withdrawal:
        text.bounded(reason, "reason", text.REASON)
        with self._db.uow() as uow:
            withdrawal = uow.session.get(Withdrawal, withdrawal_id, with_for_update=ROW_LOCK)
            if withdrawal is None or not (principal.is_admin or withdrawal.user_id == principal.user_id):
                raise NotFound("withdrawal not found", field="id")
            if not principal.is_admin:
                raise Forbidden("only an admin approves or rejects withdrawals")
            if withdrawal.user_id == principal.user_id:  # separation of duties
                raise Forbidden("an admin cannot approve or reject their own withdrawal")
            allowed = (WithdrawalStatus.PENDING,) if approve else OPEN
            if withdrawal.status not in allowed:
                raise InvalidState(f"the withdrawal is {withdrawal.status.value}", field="id")
            if approve:
                withdrawal.status = WithdrawalStatus.APPROVED
            else:
                _give_back(uow.session, withdrawal, WithdrawalStatus.REJECTED, reason or "rejected")
            uow.commit()
            return withdrawal

    # -- the batch -----------------------------------------------------------------------------------------

    def run(
        self, *, auto_approve: bool = False, now: datetime | None = None, concurrency: int = DEFAULT_CONCURRENCY
    ) -> PayoutRun:
        """The batch: at most `concurrency` provider calls at once (payql/batches.py), each with its own key.

        The database work runs on this thread, `GROUP` withdrawals per transaction: a transaction marks a group
        PROCESSING (the intents) before any of its calls is made, the calls go out on the pool, and their answers
        are applied a group at a time while the next calls are in flight. A crash anywhere leaves withdrawals
        PROCESSING, which the next run (or `payql reconcile`) sends again with the same key: the provider pays once.
        """
        batches.check_concurrency(concurrency)
        now = now or utcnow()
        with exclusive(self._db, "payouts-run") as mine:
            if not mine:
                return PayoutRun(skipped=True)
            created = self._auto_approve(now, concurrency) if auto_approve else 0
            with self._db.read() as session:
                due = list(
                    session.scalars(
                        select(Withdrawal.id)
                        .where(Withdrawal.status.in_([WithdrawalStatus.APPROVED, WithdrawalStatus.PROCESSING]))
                        .order_by(Withdrawal.id)
                    )
                )
            statuses: list[WithdrawalStatus] = []
            answered: list[tuple[_Intent, _Answer]] = []
            for intent, outcome in batches.each(self._intents(due, statuses), self._call, concurrency):
                try:
                    answered.append((intent, outcome.result()))
                except ProviderError as exc:
                    logger.warning("payout of %s not sent: %s (next run retries)", intent.withdrawal_id, exc.message)
                    statuses.append(WithdrawalStatus.PROCESSING)
                if len(answered) >= GROUP:
                    statuses += self._apply(answered)
                    answered = []
            statuses += self._apply(answered)
            count = Counter(statuses)
            return PayoutRun(
                created,
                count[WithdrawalStatus.COMPLETED],
                count[WithdrawalStatus.FAILED],
                count[WithdrawalStatus.PROCESSING],
            )

    def _auto_approve(self, now: datetime, concurrency: int) -> int:
        year, week, _ = now.isocalendar()
        period = f"{year}-W{week:02d}"
        with self._db.read() as session:
            accounts = list(
                session.scalars(
                    select(PayoutAccount)
                    .where(PayoutAccount.status == PayoutAccountStatus.VERIFIED)
                    .order_by(PayoutAccount.verified_at)
                )
            )
        first: dict[tuple[str, str], PayoutAccount] = {}
        for account in accounts:  # the first verified account per provider and currency is paid
            first.setdefault((account.user_id, account.currency), account)
        # one item per provider and currency: no two transactions lock the same payable
        groups = list(_chunks(list(first.values()), GROUP))
        return sum(outcome.result() for _, outcome in batches.each(groups, partial(self._approve, period), concurrency))

    def _approve(self, period: str, accounts: list[PayoutAccount]) -> int:
        """This week's automatic withdrawal of each account's whole available balance where it reaches the minimum,
        in one transaction and a fixed number of statements (`approvals`); returns how many were made. Should the
        batch meet a withdrawal of this week made meanwhile (the unique constraint), it is made again one
        withdrawal at a time (`_approve_each`)."""
        try:
            with self._db.uow() as uow:
                connection = uow.session.connection()
                owners = sorted({account.user_id for account in accounts})
                left: dict[tuple[str, str], int] = defaultdict(int)
                for row in connection.execute(_PAYABLES, {"owners": owners}):
                    left[row.owner_id, row.currency] -= int(row.balance_minor)  # shown positive, as `available`
                made = {
                    tuple(row) for row in connection.execute(_MADE_THIS_PERIOD, {"owners": owners, "period": period})
                }
                minimum = {account.currency: self.minimum(account.currency).minor for account in accounts}
                rows = approvals(accounts, left, made, minimum, period)
                if rows:
                    connection.execute(insert(_WITHDRAWALS), rows)
                    ledger.post_many(
                        uow.session,
                        [
                            ledger.Posting(
                                "withdrawal",
                                "withdrawal",
                                row["id"],
                                postings.withdrawal(row["user_id"], row["currency"], row["amount_minor"]),
                            )
                            for row in rows
                        ],
                        unposted=True,  # new withdrawals
                    )
                uow.commit()
                return len(rows)
        except IntegrityError:  # pragma: no cover - the run's lock (`exclusive`) keeps any other maker out
            return self._approve_each(period, accounts)

    def _approve_each(self, period: str, accounts: list[PayoutAccount]) -> int:
        """`_approve` one withdrawal at a time, in one transaction (a savepoint each)."""
        created = 0
        with self._db.uow() as uow:
            for account in accounts:
                left = available(uow.session, account.user_id, account.currency, lock=True)
                if left < self.minimum(account.currency).minor:
                    continue
                try:
                    with uow.session.begin_nested():
                        self._open(uow.session, account, left, period, WithdrawalStatus.APPROVED, left=left)
                except IntegrityError:
                    continue  # this week's automatic payout was made already
                created += 1
            uow.commit()
        return created

    def send(self, withdrawal: Withdrawal) -> WithdrawalStatus:
        """Pay an approved withdrawal, or finish one in flight: the same key again, or a re-fetch of the payout."""
        statuses: list[WithdrawalStatus] = []
        for intent in self._intents([withdrawal.id], statuses):
            statuses += self._apply([(intent, self._call(intent))])
        return statuses[0]

    def _intents(self, withdrawal_ids: list[str], skipped: list[WithdrawalStatus]) -> Iterator[_Intent]:
        """Mark the withdrawals still to pay PROCESSING, `GROUP` per transaction, and yield what to send for each
        once its group is committed (a crash after the call resends the same key); the status of each one that is
        no longer to pay goes to `skipped`."""
        for group in _chunks(withdrawal_ids, GROUP):
            intents: list[_Intent] = []
            with self._db.uow() as uow:
                connection = uow.session.connection()
                rows = connection.execute(_TO_PAY, {"ids": group}).all()
                for row in rows:
                    if row.status not in {WithdrawalStatus.APPROVED, WithdrawalStatus.PROCESSING}:
                        skipped.append(row.status)
                        continue
                    intents.append(
                        _Intent(
                            row.id,
                            row.provider,
                            row.external_account_id,
                            row.amount_minor,
                            row.currency,
                            row.provider_key,
                            row.provider_payout_id,
                        )
                    )
                if approved := [row.id for row in rows if row.status is WithdrawalStatus.APPROVED]:
                    connection.execute(_MARK_PROCESSING, {"ids": approved})  # the intents
                if len(rows) < len(group):  # pragma: no cover - withdrawals and accounts are never deleted
                    skipped.extend(WithdrawalStatus.FAILED for _ in range(len(group) - len(rows)))
                uow.commit()
            yield from intents

    def _call(self, intent: _Intent) -> _Answer:
        """The provider call of one intent (no database work: it runs on the job's pool)."""
        provider = self._providers[intent.provider]
        if intent.provider_payout_id is not None:
            return provider.retrieve_payout(intent.provider_payout_id)
        try:
            answer = provider.payout(intent.destination, intent.amount_minor, intent.currency, intent.key)
        except PayoutRefused as exc:  # definitive: nothing was paid, the money goes back at once
            logger.warning(
                "payout of %s refused by %s (%s)", intent.withdrawal_id, intent.provider.value, exc.provider_code
            )
            crash_point("payout")  # killed here: the next run asks again with the same key, and is refused again
            return exc
        crash_point("payout")
        return answer

    def _apply(self, answered: list[tuple[_Intent, _Answer]]) -> list[WithdrawalStatus]:
        """Apply answers in one transaction. Should it fail on a lock (PostgreSQL breaks a deadlock with a concurrent
        transaction that locks the same accounts in another order), each answer is applied in its own."""
        if not answered:
            return []
        try:
            with self._db.uow() as uow:
                statuses = self._apply_group(uow.session, answered)
                uow.commit()
                return statuses
        except OperationalError:
            if len(answered) == 1:
                raise
            logger.warning("payouts: a group of %d answers is applied one by one after a lock conflict", len(answered))
            return [status for pair in answered for status in self._apply([pair])]

    def _apply_group(self, session: Session, answered: list[tuple[_Intent, _Answer]]) -> list[WithdrawalStatus]:
        """The answers, applied in `session`: the common one (a payout in flight the provider paid) in a fixed
        number of statements for the whole group (`completions`), the others through the ORM one by one."""
        ids = [intent.withdrawal_id for intent, _ in answered]
        if dry_running():  # the ORM path records what it would change (not used by the run itself)
            return [
                self._apply_in(
                    session,
                    _locked(session, intent.withdrawal_id),
                    intent.provider.value,
                    answer,
                )
                for intent, answer in answered
            ]
        connection = session.connection()
        locked = {row.id: row for row in connection.execute(_ANSWERED, {"ids": ids})}
        paid, statuses = completions(answered, locked)
        for index, status in enumerate(statuses):
            if status is None:  # the rare answers: refused, failed, reversed, late
                intent, answer = answered[index]
                withdrawal = session.get(Withdrawal, intent.withdrawal_id)
                if withdrawal is None:  # pragma: no cover - never deleted
                    statuses[index] = WithdrawalStatus.FAILED
                    continue
                statuses[index] = self._apply_in(session, withdrawal, intent.provider.value, answer)
        if paid:
            now = utcnow()
            connection.execute(
                _COMPLETE,
                [
                    {
                        "withdrawal": done.withdrawal_id,
                        "status": WithdrawalStatus.COMPLETED,
                        "provider_payout_id": done.provider_payout_id,
                        "processed_at": now,
                    }
                    for done in paid
                ],
            )
            ledger.post_many(
                session,
                [
                    ledger.Posting(
                        "payout_settled",
                        "withdrawal",
                        done.withdrawal_id,
                        postings.payout_settled(done.user_id, done.cash_owner, done.currency, done.amount_minor),
                    )
                    for done in paid
                ],
            )
        session.flush()
        return [status or WithdrawalStatus.FAILED for status in statuses]

    @staticmethod
    def _apply_in(session: Session, withdrawal: Withdrawal, cash_owner: str, answer: _Answer) -> WithdrawalStatus:
        if isinstance(answer, PayoutRefused):
            return _refused_in(session, withdrawal, answer.provider_code or REFUSED)
        return _settle_in(session, withdrawal, cash_owner, answer)

    def refused(self, withdrawal_id: str, failure_reason: str) -> WithdrawalStatus:
        """The provider refused to create the payout: a withdrawal still in flight fails, its money is available."""
        with self._db.uow() as uow:
            withdrawal = uow.session.get(Withdrawal, withdrawal_id, with_for_update=ROW_LOCK)
            if withdrawal is None:  # pragma: no cover - never deleted
                return WithdrawalStatus.FAILED
            status = _refused_in(uow.session, withdrawal, failure_reason)
            uow.commit()
            return status

    def settle(self, withdrawal_id: str, answer: ProviderPayout) -> WithdrawalStatus:
        """Apply a provider's view of a payout: COMPLETED, FAILED (money back to payable) or still pending; a
        COMPLETED payout the provider reversed or canceled afterwards becomes FAILED (`payout_reversed`)."""
        with self._db.uow() as uow:
            withdrawal = uow.session.get(Withdrawal, withdrawal_id, with_for_update=ROW_LOCK)
            if withdrawal is None:  # pragma: no cover - never deleted
                return WithdrawalStatus.FAILED
            status = _settle_in(uow.session, withdrawal, _cash_owner(uow.session, withdrawal), answer)
            uow.commit()
            return status


def _refused_in(session: Session, withdrawal: Withdrawal, failure_reason: str) -> WithdrawalStatus:
    """A refusal, applied to a withdrawal locked in `session`."""
    if withdrawal.status is WithdrawalStatus.PROCESSING and withdrawal.provider_payout_id is None:
        _give_back(session, withdrawal, WithdrawalStatus.FAILED, failure=failure_reason)
    return withdrawal.status


def _settle_in(session: Session, withdrawal: Withdrawal, cash_owner: str, answer: ProviderPayout) -> WithdrawalStatus:
    """A provider's view of the payout, applied to a withdrawal locked in `session`; `cash_owner` is the provider
    whose cash the payout left."""
    withdrawal.provider_payout_id = withdrawal.provider_payout_id or answer.provider_payout_id
    if withdrawal.status is WithdrawalStatus.PROCESSING and answer.status == "succeeded":
        withdrawal.status = WithdrawalStatus.COMPLETED
        withdrawal.processed_at = utcnow()
        lines = postings.payout_settled(withdrawal.user_id, cash_owner, withdrawal.currency, withdrawal.amount_minor)
        ledger.post(session, "payout_settled", "withdrawal", withdrawal.id, lines)
    elif withdrawal.status is WithdrawalStatus.PROCESSING and answer.status == "failed":
        _give_back(session, withdrawal, WithdrawalStatus.FAILED, failure=answer.failure_code or CANCELED)
    elif withdrawal.status is WithdrawalStatus.COMPLETED and answer.status == "failed":
        # paid, then reversed or canceled by the provider: the settlement and the request are undone exactly
        withdrawal.status = WithdrawalStatus.FAILED
        withdrawal.failure_reason = (answer.failure_code or REVERSED)[:FAILURE_REASON_LENGTH]
        withdrawal.processed_at = utcnow()
        lines = postings.payout_reversed(withdrawal.user_id, cash_owner, withdrawal.currency, withdrawal.amount_minor)
        ledger.post(session, "payout_reversed", "withdrawal", withdrawal.id, lines)
    elif withdrawal.status is WithdrawalStatus.COMPLETED and answer.reversed_minor > 0:
        # part of a paid payout taken back (a partial Stripe transfer reversal): not booked (README "Provider truth:
        # what payql books"); the whole reversal, if it comes, is
        logger.warning(
            "withdrawal %s: the provider reversed %s of its %s %s; not booked, left to the operator",
            withdrawal.id,
            answer.reversed_minor,
            withdrawal.amount_minor,
            withdrawal.currency,
        )
    # anything else (FAILED, or a late "pending"/"succeeded" after the end) changes nothing: no regression
    return withdrawal.status


@dataclass(frozen=True, slots=True)
class _Intent:
    """What one payout call sends, read under the withdrawal's lock when it was marked PROCESSING."""

    withdrawal_id: str
    provider: ProviderName
    destination: str
    amount_minor: int
    currency: str
    key: str
    provider_payout_id: str | None


_Answer = ProviderPayout | PayoutRefused


@dataclass(frozen=True, slots=True)
class _Paid:
    """A withdrawal in flight whose payout the provider confirmed: what completing it writes."""

    withdrawal_id: str
    user_id: str
    cash_owner: str
    currency: str
    amount_minor: int
    provider_payout_id: str


def completions(
    answered: list[tuple[_Intent, _Answer]], locked: dict[str, Any]
) -> tuple[list[_Paid], list[WithdrawalStatus | None]]:
    """Which answers complete their withdrawal (still PROCESSING, as `locked` read it under its lock, and paid by
    the provider): those are written together; the status of each answer, None where the answer is to be applied
    one by one (refused, failed, reversed, or the withdrawal no longer in flight: `_apply_in`). A withdrawal
    answered twice in one group is completed once (the second goes one by one and changes nothing)."""
    paid: list[_Paid] = []
    statuses: list[WithdrawalStatus | None] = []
    done: set[str] = set()
    for intent, answer in answered:
        row = locked.get(intent.withdrawal_id)
        if (
            row is None
            or intent.withdrawal_id in done
            or isinstance(answer, PayoutRefused)
            or answer.status != "succeeded"
            or row.status is not WithdrawalStatus.PROCESSING
        ):
            statuses.append(None)
            continue
        done.add(intent.withdrawal_id)
        paid.append(
            _Paid(
                intent.withdrawal_id,
                row.user_id,
                intent.provider.value,
                row.currency,
                row.amount_minor,
                row.provider_payout_id or answer.provider_payout_id,
            )
        )
        statuses.append(WithdrawalStatus.COMPLETED)
    return paid, statuses


def _locked(session: Session, withdrawal_id: str) -> Withdrawal:
    withdrawal = session.get(Withdrawal, withdrawal_id, with_for_update=ROW_LOCK)
    if withdrawal is None:  # pragma: no cover - never deleted
        raise NotFound("withdrawal not found")
    return withdrawal


class NewWithdrawal(TypedDict):
    """A row of `withdrawals` made by the payout run's automatic approval."""

    id: str
    user_id: str
    payout_account_id: str
    amount_minor: int
    currency: str
    status: WithdrawalStatus
    period: str
    provider_key: str


def approvals(
    accounts: list[PayoutAccount],
    available: dict[tuple[str, str], int],
    made: set[tuple[str, ...]],
    minimum: dict[str, int],
    period: str,
) -> list[NewWithdrawal]:
    """The rows of this period's automatic withdrawals for these accounts (the first verified account of each
    provider and currency): each account's whole `available` balance (by user and currency, as read under the
    payables' locks), where it reaches its currency's `minimum` and no withdrawal of the period was `made` for that
    user and currency already. An account seen twice for one user and currency is paid once."""
    rows: list[NewWithdrawal] = []
    taken = set(made)
    for account in accounts:
        key = (account.user_id, account.currency)
        left = available.get(key, 0)
        if key in taken or left <= 0 or left < minimum[account.currency]:
            continue
        taken.add(key)
        withdrawal_id = new_id("wdr")
        rows.append(
            {
                "id": withdrawal_id,
                "user_id": account.user_id,
                "payout_account_id": account.id,
                "amount_minor": left,
                "currency": account.currency,
                "status": WithdrawalStatus.APPROVED,
                "period": period,
                "provider_key": f"payql-{withdrawal_id}-payout",
            }
        )
    return rows


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _give_back(
    session: Session,
    withdrawal: Withdrawal,
    status: WithdrawalStatus,
    reason: str | None = None,
    *,
    failure: str | None = None,
) -> None:
    """A rejected or failed withdrawal: its money goes back from payouts in flight to the payable, once. `reason` is
    the admin's (a rejection), `failure` the provider's side (a refused or canceled payout)."""
    withdrawal.status = status
    withdrawal.reason = reason
    withdrawal.failure_reason = failure[:FAILURE_REASON_LENGTH] if failure else None
    withdrawal.processed_at = utcnow()
    lines = postings.withdrawal_returned(withdrawal.user_id, withdrawal.currency, withdrawal.amount_minor)
    ledger.post(session, "withdrawal_returned", "withdrawal", withdrawal.id, lines)


def _cash_owner(session: Session, withdrawal: Withdrawal) -> str:
    account = session.get(PayoutAccount, withdrawal.payout_account_id)
    return account.provider.value if account is not None else PLATFORM
