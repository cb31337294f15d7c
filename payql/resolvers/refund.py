from __future__ import annotations

from payql.resolvers.common import GQLInfo, caller, money, mutate
from payql.schema.inputs import RefundInput
from payql.schema.nodes import payment_node, refund_node
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
        return RefundPayload(
            refund=refund_node(result.refund), payment=payment_node(info.context.loaders, result.payment)
        )

    return mutate(run, lambda errors: RefundPayload(errors=errors))
