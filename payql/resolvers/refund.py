from __future__ import annotations

from payql.resolvers.common import GQLInfo, caller, money, mutate
from payql.schema.inputs import RefundInput
from payql.schema.payloads import RefundPayload


def refund(info: GQLInfo, input: RefundInput) -> RefundPayload:  # noqa: A002 - the contract's argument name
    def run() -> RefundPayload:
        result = info.context.services.refunds.refund_payment(
            caller(info),
            input.payment_id,
            money(input.amount, "amount") if input.amount else None,
            input.reason,
            input.note,
            input.idempotency_key,
        )
        return RefundPayload(refund=result.refund, payment=result.payment)  # type: ignore[arg-type]

    return mutate(run, lambda errors: RefundPayload(errors=errors))
