from __future__ import annotations

import strawberry

from payql.resolvers.common import GQLInfo, caller, mutate
from payql.schema.nodes import withdrawal_type
from payql.schema.payloads import WithdrawalPayload


def reject_withdrawal(info: GQLInfo, id: strawberry.ID, reason: str | None = None) -> WithdrawalPayload:  # noqa: A002
    """An admin rejects a withdrawal: its money goes back to the provider's available balance."""

    def run() -> WithdrawalPayload:
        withdrawal = info.context.services.payouts.review(caller(info), id, approve=False, reason=reason)
        return WithdrawalPayload(withdrawal=withdrawal_type(withdrawal))

    return mutate(run, lambda errors: WithdrawalPayload(errors=errors))
