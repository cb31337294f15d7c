"""Payout accounts and withdrawals: registerPayoutAccount, verify/rejectPayoutAccount, requestWithdrawal,
approve/rejectWithdrawal, and the `withdrawals` / `payoutAccounts` queries."""

from __future__ import annotations

from typing import Any

import strawberry
from sqlalchemy import select

from payql import models as m
from payql.resolvers.common import GQLInfo, caller, money, mutate
from payql.schema.enums import WithdrawalStatus as WithdrawalStatusEnum
from payql.schema.inputs import RegisterPayoutAccountInput, RequestWithdrawalInput
from payql.schema.payloads import PayoutAccountPayload, WithdrawalPayload
from payql.schema.types import Connection, Money, PayoutAccount, Withdrawal
from payql.services import queries


def withdrawal_type(row: Any) -> Withdrawal:
    return Withdrawal(
        id=strawberry.ID(row.id),
        provider_id=strawberry.ID(row.user_id),
        amount=Money.of(row.amount_minor, row.currency),
        status=row.status,
        reason=row.reason,
        created_at=row.created_at,
        processed_at=row.processed_at,
    )


def account_type(row: m.PayoutAccount) -> PayoutAccount:
    return PayoutAccount(
        id=strawberry.ID(row.id),
        provider=row.provider,
        status=row.status.value,
        currency=row.currency,
        external_account_id=row.external_account_id,
        created_at=row.created_at,
    )


def register_payout_account(info: GQLInfo, input: RegisterPayoutAccountInput) -> PayoutAccountPayload:  # noqa: A002
    def run() -> PayoutAccountPayload:
        account = info.context.services.payouts.register_account(
            caller(info), input.provider, input.external_account_id, input.currency
        )
        return PayoutAccountPayload(payout_account=account_type(account))

    return mutate(run, lambda errors: PayoutAccountPayload(errors=errors))


def verify_payout_account(info: GQLInfo, id: strawberry.ID) -> PayoutAccountPayload:  # noqa: A002
    def run() -> PayoutAccountPayload:
        account = info.context.services.payouts.review_account(caller(info), id, verified=True)
        return PayoutAccountPayload(payout_account=account_type(account))

    return mutate(run, lambda errors: PayoutAccountPayload(errors=errors))


def reject_payout_account(info: GQLInfo, id: strawberry.ID) -> PayoutAccountPayload:  # noqa: A002
    def run() -> PayoutAccountPayload:
        account = info.context.services.payouts.review_account(caller(info), id, verified=False)
        return PayoutAccountPayload(payout_account=account_type(account))

    return mutate(run, lambda errors: PayoutAccountPayload(errors=errors))


def request_withdrawal(info: GQLInfo, input: RequestWithdrawalInput) -> WithdrawalPayload:  # noqa: A002
    def run() -> WithdrawalPayload:
        withdrawal = info.context.services.payouts.request(
            caller(info), money(input.amount, "amount"), input.idempotency_key
        )
        return WithdrawalPayload(withdrawal=withdrawal_type(withdrawal))

    return mutate(run, lambda errors: WithdrawalPayload(errors=errors))


def approve_withdrawal(info: GQLInfo, id: strawberry.ID) -> WithdrawalPayload:  # noqa: A002
    def run() -> WithdrawalPayload:
        withdrawal = info.context.services.payouts.review(caller(info), id, approve=True, reason=None)
        return WithdrawalPayload(withdrawal=withdrawal_type(withdrawal))

    return mutate(run, lambda errors: WithdrawalPayload(errors=errors))


def reject_withdrawal(info: GQLInfo, id: strawberry.ID, reason: str | None = None) -> WithdrawalPayload:  # noqa: A002
    def run() -> WithdrawalPayload:
        withdrawal = info.context.services.payouts.review(caller(info), id, approve=False, reason=reason)
        return WithdrawalPayload(withdrawal=withdrawal_type(withdrawal))

    return mutate(run, lambda errors: WithdrawalPayload(errors=errors))


def withdrawals(
    info: GQLInfo,
    first: int = queries.DEFAULT_PAGE,
    after: str | None = None,
    status: WithdrawalStatusEnum | None = None,
) -> Connection[Withdrawal]:
    """A provider's own withdrawals; an admin sees all."""
    principal = caller(info)
    page = queries.list_withdrawals(info.context.session, principal, first, after, status)
    from payql.resolvers.queries import _connection  # noqa: PLC0415 - the shared connection builder

    return _connection(page, withdrawal_type)


def payout_accounts(info: GQLInfo, first: int = queries.LIST_CAP) -> list[PayoutAccount]:
    """The caller's payout accounts; an admin sees all."""
    principal = caller(info)
    size = queries.list_size(first, queries.LIST_CAP)
    query = select(m.PayoutAccount).order_by(m.PayoutAccount.id).limit(size)
    if not principal.is_admin:
        query = query.where(m.PayoutAccount.user_id == principal.user_id)
    return [account_type(row) for row in info.context.session.scalars(query)]
