"""Provider payouts (seeds/001 and 003): payout accounts, withdrawals with a minimum, the weekly payout batch.

- A provider registers a payout account (a Stripe Connect account `acct_…`, or a YooKassa payout token /
  `wallet:<number>`); an admin verifies or rejects it. Only verified accounts are paid.
- `requestWithdrawal` takes at least `PAYOUT_MINIMUM` and at most what is available, never while the payable is
  negative, and moves the amount from `payable` to `payouts_in_flight` at once (under the payable account's row lock),
  so it cannot be requested twice. An admin approves or rejects it (a rejection gives the money back).
- `payql payouts run` sends every approved withdrawal through its provider with a stable key per withdrawal
  (PROCESSING), and settles it when the provider confirms: COMPLETED (`payouts_in_flight → provider_cash`), or FAILED
  (the money goes back to `payable`). `--auto-approve` (the weekly run) first makes one approved withdrawal per
  verified provider whose available balance reaches the minimum, once per ISO week (a unique constraint).
- A payout the provider refuses definitively (`PayoutRefused`: a 4xx other than a rate limit) fails at once with
  `failure_reason`; a transient failure leaves it PROCESSING and the next run sends the same key again. A COMPLETED
  payout the provider reverses or cancels later becomes FAILED and `payout_reversed` undoes its settlement.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from payql.auth import Principal
from payql.db import ROW_LOCK, Database
from payql.faults import crash_point
from payql.models import PLATFORM, AccountKind, PayoutAccount, Withdrawal, new_id, utcnow
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
    ) -> Withdrawal:
        """Take `amount` out of the payable (locked) into payouts in flight, with its withdrawal."""
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

    def run(self, *, auto_approve: bool = False, now: datetime | None = None) -> PayoutRun:
        now = now or utcnow()
        with exclusive(self._db, "payouts-run") as mine:
            if not mine:
                return PayoutRun(skipped=True)
            created = self._auto_approve(now) if auto_approve else 0
            completed = failed = pending = 0
            with self._db.read() as session:
                due = list(
                    session.scalars(
                        select(Withdrawal)
                        .where(Withdrawal.status.in_([WithdrawalStatus.APPROVED, WithdrawalStatus.PROCESSING]))
                        .order_by(Withdrawal.id)
                    )
                )
            for withdrawal in due:
                try:
                    status = self.send(withdrawal)
                except ProviderError as exc:
                    logger.warning("payout of %s not sent: %s (next run retries)", withdrawal.id, exc.message)
                    pending += 1
                    continue
                completed += status is WithdrawalStatus.COMPLETED
                failed += status is WithdrawalStatus.FAILED
                pending += status is WithdrawalStatus.PROCESSING
            return PayoutRun(created, completed, failed, pending)

    def _auto_approve(self, now: datetime) -> int:
        year, week, _ = now.isocalendar()
        period = f"{year}-W{week:02d}"
        created = 0
        with self._db.read() as session:
            accounts = list(
                session.scalars(
                    select(PayoutAccount)
                    .where(PayoutAccount.status == PayoutAccountStatus.VERIFIED)
                    .order_by(PayoutAccount.verified_at)
                )
            )
        seen: set[tuple[str, str]] = set()
        for account in accounts:
            if (account.user_id, account.currency) in seen:
                continue  # the first verified account per provider and currency is paid
            seen.add((account.user_id, account.currency))
            with self._db.uow() as uow:
                left = available(uow.session, account.user_id, account.currency, lock=True)
                if left < self.minimum(account.currency).minor:
                    continue
                try:
                    self._open(uow.session, account, left, period, WithdrawalStatus.APPROVED)
                    uow.commit()
                except IntegrityError:
                    continue  # this week's automatic payout was made already
                created += 1
        return created

    def send(self, withdrawal: Withdrawal) -> WithdrawalStatus:
        """Pay an approved withdrawal, or finish one in flight: the same key again, or a re-fetch of the payout."""
        with self._db.uow() as uow:
            locked = uow.session.get(Withdrawal, withdrawal.id, with_for_update=ROW_LOCK)
            account = uow.session.get(PayoutAccount, withdrawal.payout_account_id)
            if (
                locked is None
                or account is None
                or locked.status
                not in {
                    WithdrawalStatus.APPROVED,
                    WithdrawalStatus.PROCESSING,
                }
            ):
                return locked.status if locked is not None else WithdrawalStatus.FAILED
            locked.status = WithdrawalStatus.PROCESSING  # the intent: a crash after the call resends the same key
            uow.commit()
        provider = self._providers[account.provider]
        if locked.provider_payout_id is None:
            try:
                answer = provider.payout(
                    account.external_account_id, locked.amount_minor, locked.currency, locked.provider_key
                )
            except PayoutRefused as exc:  # definitive: nothing was paid, the money goes back at once
                logger.warning("payout of %s refused by %s (%s)", locked.id, account.provider.value, exc.provider_code)
                crash_point("payout")  # killed here: the next run asks again with the same key, and is refused again
                return self.refused(locked.id, exc.provider_code or REFUSED)
            crash_point("payout")
        else:
            answer = provider.retrieve_payout(locked.provider_payout_id)
        return self.settle(locked.id, answer)

    def refused(self, withdrawal_id: str, failure_reason: str) -> WithdrawalStatus:
        """The provider refused to create the payout: a withdrawal still in flight fails, its money is available."""
        with self._db.uow() as uow:
            withdrawal = uow.session.get(Withdrawal, withdrawal_id, with_for_update=ROW_LOCK)
            if withdrawal is None:  # pragma: no cover - never deleted
                return WithdrawalStatus.FAILED
            if withdrawal.status is WithdrawalStatus.PROCESSING and withdrawal.provider_payout_id is None:
                _give_back(uow.session, withdrawal, WithdrawalStatus.FAILED, failure=failure_reason)
            uow.commit()
            return withdrawal.status

    def settle(self, withdrawal_id: str, answer: ProviderPayout) -> WithdrawalStatus:
        """Apply a provider's view of a payout: COMPLETED, FAILED (money back to payable) or still pending; a
        COMPLETED payout the provider reversed or canceled afterwards becomes FAILED (`payout_reversed`)."""
        with self._db.uow() as uow:
            withdrawal = uow.session.get(Withdrawal, withdrawal_id, with_for_update=ROW_LOCK)
            if withdrawal is None:  # pragma: no cover - never deleted
                return WithdrawalStatus.FAILED
            withdrawal.provider_payout_id = withdrawal.provider_payout_id or answer.provider_payout_id
            if withdrawal.status is WithdrawalStatus.PROCESSING and answer.status == "succeeded":
                withdrawal.status = WithdrawalStatus.COMPLETED
                withdrawal.processed_at = utcnow()
                lines = postings.payout_settled(
                    withdrawal.user_id,
                    _cash_owner(uow.session, withdrawal),
                    withdrawal.currency,
                    withdrawal.amount_minor,
                )
                ledger.post(uow.session, "payout_settled", "withdrawal", withdrawal.id, lines)
            elif withdrawal.status is WithdrawalStatus.PROCESSING and answer.status == "failed":
                _give_back(uow.session, withdrawal, WithdrawalStatus.FAILED, failure=answer.failure_code or CANCELED)
            elif withdrawal.status is WithdrawalStatus.COMPLETED and answer.status == "failed":
                # paid, then reversed or canceled by the provider: the settlement and the request are undone exactly
                withdrawal.status = WithdrawalStatus.FAILED
                withdrawal.failure_reason = (answer.failure_code or REVERSED)[:FAILURE_REASON_LENGTH]
                withdrawal.processed_at = utcnow()
                lines = postings.payout_reversed(
                    withdrawal.user_id,
                    _cash_owner(uow.session, withdrawal),
                    withdrawal.currency,
                    withdrawal.amount_minor,
                )
                ledger.post(uow.session, "payout_reversed", "withdrawal", withdrawal.id, lines)
            elif withdrawal.status is WithdrawalStatus.COMPLETED and answer.reversed_minor > 0:
                # part of a paid payout taken back (a partial Stripe transfer reversal): not booked (README
                # "Provider truth: what payql books"); the whole reversal, if it comes, is
                logger.warning(
                    "withdrawal %s: the provider reversed %s of its %s %s; not booked, left to the operator",
                    withdrawal.id,
                    answer.reversed_minor,
                    withdrawal.amount_minor,
                    withdrawal.currency,
                )
            # anything else (FAILED, or a late "pending"/"succeeded" after the end) changes nothing: no regression
            uow.commit()
            return withdrawal.status


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
