from __future__ import annotations

from payql.resolvers.common import GQLInfo, caller, money, mutate
from payql.schema.inputs import RequestWithdrawalInput
from payql.schema.nodes import withdrawal_type
from payql.schema.payloads import WithdrawalPayload


def request_withdrawal(info: GQLInfo, input: RequestWithdrawalInput) -> WithdrawalPayload:  # noqa: A002
    """A provider asks for a payout of available earnings (at least PAYOUT_MINIMUM)."""

    def run() -> WithdrawalPayload:
        withdrawal = info.context.services.payouts.request(
            caller(info), money(input.amount, "amount"), input.idempotency_key
        )
        return WithdrawalPayload(withdrawal=withdrawal_type(withdrawal))

    return mutate(run, lambda errors: WithdrawalPayload(errors=errors))
