from __future__ import annotations

from payql.resolvers.common import GQLInfo, caller, mutate
from payql.schema.inputs import CreateIntentInput
from payql.schema.nodes import payment_node
from payql.schema.payloads import CreateIntentPayload


def create_intent(info: GQLInfo, input: CreateIntentInput) -> CreateIntentPayload:  # noqa: A002 - contract name
    def run() -> CreateIntentPayload:
        result = info.context.services.payments.create_intent(
            caller(info),
            enroll_id=input.enroll_id,
            package_code=input.package_code,
            provider=input.provider,
            capture_method=input.capture_method,
            return_url=input.return_url,
            idempotency_key=input.idempotency_key,
        )
        return CreateIntentPayload(
            payment=payment_node(info.context.loaders, result.payment),
            client_secret=result.client_secret,
            checkout_url=result.checkout_url,
            confirmation_url=result.confirmation_url,
        )

    return mutate(run, lambda errors: CreateIntentPayload(errors=errors))
