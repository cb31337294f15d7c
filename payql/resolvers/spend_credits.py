from __future__ import annotations

from payql.resolvers.balances import balances_of
from payql.resolvers.common import GQLInfo, caller, mutate
from payql.schema.inputs import SpendCreditsInput
from payql.schema.payloads import SpendCreditsPayload


def spend_credits(info: GQLInfo, input: SpendCreditsInput) -> SpendCreditsPayload:  # noqa: A002 - contract name
    """Consumes credits, soonest-expiring lots first; INSUFFICIENT_FUNDS when short."""

    def run() -> SpendCreditsPayload:
        principal = caller(info)
        result = info.context.services.credits.spend(principal, input.credits, input.reference, input.idempotency_key)
        return SpendCreditsPayload(
            transaction=result.transaction,  # type: ignore[arg-type]
            balance=balances_of(info, principal.user_id),
        )

    return mutate(run, lambda errors: SpendCreditsPayload(errors=errors))
