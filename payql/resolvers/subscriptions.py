"""Subscription resolvers: each reads its object now, under the same rules as the `payment` and `enroll` queries.

`payql.subscriptions` runs them again on every committed change of what they read (the keys they leave in
`info.context.watched`), and sends the answer when it differs from the last one sent.
"""

from __future__ import annotations

import strawberry

from payql import models as m
from payql.resolvers.common import GQLInfo, caller
from payql.schema.nodes import enroll_node, payment_node
from payql.schema.types import Enroll, Payment
from payql.services import enrolls as enroll_rules
from payql.services.errors import NotFound


def payment_updated(info: GQLInfo, id: strawberry.ID) -> Payment:  # noqa: A002 - the contract's argument name
    principal = caller(info)
    info.context.watched.add(("payment", str(id)))  # an unknown id is watched too: it ends with NOT_FOUND anyway
    row = info.context.services.payments.get_visible(info.context.session, principal, id)
    if row.enroll_id is not None:
        info.context.watched.add(("enroll", row.enroll_id))  # a payment shows its enroll
    return payment_node(info.context.loaders, row)  # type: ignore[no-any-return]


def enroll_updated(info: GQLInfo, id: strawberry.ID) -> Enroll:  # noqa: A002 - the contract's argument name
    principal = caller(info)
    info.context.watched.add(("enroll", str(id)))
    row = info.context.session.get(m.Enroll, id)
    if row is None or not enroll_rules.can_see(principal, row):
        raise NotFound("enroll not found", field="id")
    return enroll_node(info.context.loaders, row)  # type: ignore[no-any-return]
