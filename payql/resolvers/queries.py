"""Query resolvers: read the context, call the read side, map to GraphQL types."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import strawberry

from payql import models as m
from payql.models.enums import DisputeStatus, EnrollStatus, PaymentPurpose, PaymentStatus
from payql.resolvers.common import GQLInfo, caller
from payql.schema.enums import WithdrawalStatus as WithdrawalStatusEnum
from payql.schema.nodes import (
    EdgeNode,
    PaymentNode,
    dispute_node,
    enroll_node,
    package_type,
    payment_node,
    payout_account_type,
    withdrawal_type,
)
from payql.schema.types import (
    Connection,
    CreditPackage,
    CreditTransaction,
    Dispute,
    Enroll,
    PageInfo,
    Payment,
    PayoutAccount,
    Withdrawal,
)
from payql.services import enrolls as enroll_rules
from payql.services import queries
from payql.services.errors import NotFound


def _connection(page: queries.Page[Any], wrap: Callable[[Any], Any]) -> Connection[Any]:
    edges: list[Any] = [EdgeNode(item.id, wrap(item)) for item in page.items]  # standing in for `Edge`s
    return Connection(
        edges=edges,
        page_info=PageInfo(has_next_page=page.has_next, end_cursor=edges[-1].cursor if edges else None),
        _count=page.count,
    )


def packages(info: GQLInfo) -> list[CreditPackage]:
    return [package_type(package) for package in info.context.services.catalogue.all()[: queries.LIST_CAP]]


def payments(
    info: GQLInfo,
    first: int = queries.DEFAULT_PAGE,
    after: str | None = None,
    status: PaymentStatus | None = None,
    purpose: PaymentPurpose | None = None,
) -> Connection[Payment]:
    principal = caller(info)
    lean = "Payment" in info.context.lean  # the operation reads no more of a payment than its lean columns
    page = queries.list_payments(info.context.connection, principal, first, after, status, purpose, lean=lean)
    loaders = info.context.loaders
    loaders.want_payments(page.items)
    return _connection(page, functools.partial(PaymentNode, loaders=loaders))  # a page has no None rows


def payment(info: GQLInfo, id: strawberry.ID) -> Payment | None:  # noqa: A002 - the contract's argument name
    principal = caller(info)
    row = info.context.services.payments.get_visible(info.context.session, principal, id)
    return payment_node(info.context.loaders, row)  # type: ignore[no-any-return]


def enroll(info: GQLInfo, id: strawberry.ID) -> Enroll | None:  # noqa: A002 - the contract's argument name
    principal = caller(info)
    row = info.context.session.get(m.Enroll, id)
    if row is None or not enroll_rules.can_see(principal, row):
        raise NotFound("enroll not found", field="id")
    return enroll_node(info.context.loaders, row)  # type: ignore[no-any-return]


def enrolls(
    info: GQLInfo, first: int = queries.DEFAULT_PAGE, after: str | None = None, status: EnrollStatus | None = None
) -> Connection[Enroll]:
    principal = caller(info)
    page = queries.list_enrolls(info.context.connection, principal, first, after, status)
    loaders = info.context.loaders
    loaders.enroll_payment.want([item.id for item in page.items])
    return _connection(page, lambda row: enroll_node(loaders, row))


def credit_transactions(
    info: GQLInfo, first: int = queries.DEFAULT_PAGE, after: str | None = None
) -> Connection[CreditTransaction]:
    principal = caller(info)
    page = queries.list_credit_transactions(info.context.connection, principal, first, after)
    return _connection(page, lambda row: row)


def withdrawals(
    info: GQLInfo,
    first: int = queries.DEFAULT_PAGE,
    after: str | None = None,
    status: WithdrawalStatusEnum | None = None,
) -> Connection[Withdrawal]:
    """A provider's own withdrawals; an admin sees all."""
    page = queries.list_withdrawals(info.context.connection, caller(info), first, after, status)
    return _connection(page, withdrawal_type)


def payout_accounts(info: GQLInfo, first: int = queries.LIST_CAP) -> list[PayoutAccount]:
    """The caller's payout accounts; an admin sees all."""
    principal = caller(info)
    size = queries.list_size(first, queries.LIST_CAP)
    return [payout_account_type(row) for row in queries.list_payout_accounts(info.context.session, principal, size)]


def disputes(
    info: GQLInfo, first: int = queries.DEFAULT_PAGE, after: str | None = None, status: DisputeStatus | None = None
) -> Connection[Dispute]:
    """Disputes on the caller's earnings (as payee); an admin sees all."""
    page = queries.list_disputes(info.context.connection, caller(info), first, after, status)
    return _connection(page, dispute_node)
