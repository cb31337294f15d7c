from __future__ import annotations

import strawberry

from payql.resolvers.common import GQLInfo, caller, mutate
from payql.schema.nodes import payout_account_type
from payql.schema.payloads import PayoutAccountPayload


def reject_payout_account(info: GQLInfo, id: strawberry.ID) -> PayoutAccountPayload:  # noqa: A002
    """An admin rejects a payout account."""

    def run() -> PayoutAccountPayload:
        account = info.context.services.payouts.review_account(caller(info), id, verified=False)
        return PayoutAccountPayload(payout_account=payout_account_type(account))

    return mutate(run, lambda errors: PayoutAccountPayload(errors=errors))
