from __future__ import annotations

from payql.resolvers.common import GQLInfo, caller, mutate
from payql.schema.inputs import RegisterPayoutAccountInput
from payql.schema.nodes import payout_account_type
from payql.schema.payloads import PayoutAccountPayload


def register_payout_account(info: GQLInfo, input: RegisterPayoutAccountInput) -> PayoutAccountPayload:  # noqa: A002
    """A provider registers where their payouts go (PENDING until an admin verifies it)."""

    def run() -> PayoutAccountPayload:
        account = info.context.services.payouts.register_account(
            caller(info), input.provider, input.external_account_id, input.currency
        )
        return PayoutAccountPayload(payout_account=payout_account_type(account))

    return mutate(run, lambda errors: PayoutAccountPayload(errors=errors))
