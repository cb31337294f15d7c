from __future__ import annotations

import strawberry

from payql.resolvers.common import GQLInfo, caller, mutate
from payql.schema.nodes import withdrawal_type
from payql.schema.payloads import WithdrawalPayload


def approve_withdrawal(info: GQLInfo, id: strawberry.ID) -> WithdrawalPayload:  # noqa: A002
    """An admin approves a withdrawal; `payql payouts run` sends it."""

    def run() -> WithdrawalPayload:
        withdrawal = info.context.services.payouts.review(caller(info), id, approve=True, reason=None)
        return WithdrawalPayload(withdrawal=withdrawal_type(withdrawal))

    return mutate(run, lambda errors: WithdrawalPayload(errors=errors))
