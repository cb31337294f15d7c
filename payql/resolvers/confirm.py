from __future__ import annotations

from typing import Annotated

import strawberry

from payql.resolvers.common import GQLInfo, caller, mutate, user_error
from payql.schema.nodes import payment_node
from payql.schema.payloads import ConfirmPayload


def confirm(
    info: GQLInfo,
    payment_id: strawberry.ID,
    payment_method: Annotated[
        str | None,
        strawberry.argument(
            description="Stripe: a PaymentMethod to confirm with server-side. Mock mode: a Stripe test card number."
        ),
    ] = None,
) -> ConfirmPayload:
    def run() -> ConfirmPayload:
        result = info.context.services.payments.confirm(caller(info), payment_id, payment_method)
        errors = [user_error(result.error)] if result.error else []
        return ConfirmPayload(payment=payment_node(info.context.loaders, result.payment), errors=errors)

    return mutate(run, lambda errors: ConfirmPayload(errors=errors))
