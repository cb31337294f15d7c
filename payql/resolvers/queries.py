"""Query resolvers: read the context, call the read side, map to GraphQL types."""

from __future__ import annotations

import strawberry

from payql import models as m
from payql.models.enums import EnrollStatus, PaymentPurpose, PaymentStatus
from payql.resolvers.common import GQLInfo, caller
from payql.schema.types import Connection, CreditPackage, Edge, Enroll, PageInfo, Payment
from payql.services import enrolls as enroll_rules
from payql.services import queries
from payql.services.errors import NotFound


def _connection(page: queries.Page[object], node_id: str = "id") -> Connection[object]:
    edges = [Edge(cursor=queries.encode_cursor(getattr(item, node_id)), node=item) for item in page.items]
    return Connection(
        edges=edges,
        page_info=PageInfo(has_next_page=page.has_next, end_cursor=edges[-1].cursor if edges else None),
        _count=page.count,
    )


def packages(info: GQLInfo) -> list[CreditPackage]:
    return info.context.services.catalogue.all()  # type: ignore[return-value]


def payments(
    info: GQLInfo,
    first: int = queries.DEFAULT_PAGE,
    after: str | None = None,
    status: PaymentStatus | None = None,
    purpose: PaymentPurpose | None = None,
) -> Connection[Payment]:
    principal = caller(info)
    page = queries.list_payments(info.context.session, principal, first, after, status, purpose)
    info.context.loaders.want_payments(page.items)
    return _connection(page)  # type: ignore[arg-type, return-value]


def payment(info: GQLInfo, id: strawberry.ID) -> Payment | None:  # noqa: A002 - the contract's argument name
    principal = caller(info)
    return info.context.services.payments.get_visible(info.context.session, principal, id)  # type: ignore[return-value]


def enroll(info: GQLInfo, id: strawberry.ID) -> Enroll | None:  # noqa: A002 - the contract's argument name
    principal = caller(info)
    row = info.context.session.get(m.Enroll, id)
    if row is None or not enroll_rules.can_see(principal, row):
        raise NotFound("enroll not found", field="id")
    return row  # type: ignore[return-value]


def enrolls(
    info: GQLInfo, first: int = queries.DEFAULT_PAGE, after: str | None = None, status: EnrollStatus | None = None
) -> Connection[Enroll]:
    principal = caller(info)
    page = queries.list_enrolls(info.context.session, principal, first, after, status)
    info.context.loaders.enroll_payment.want(item.id for item in page.items)
    return _connection(page)  # type: ignore[arg-type, return-value]
