from __future__ import annotations

from payql.resolvers.common import GQLInfo, caller, money, mutate
from payql.schema.inputs import CreateEnrollInput
from payql.schema.payloads import EnrollPayload


def create_enroll(info: GQLInfo, input: CreateEnrollInput) -> EnrollPayload:  # noqa: A002 - the contract's name
    def run() -> EnrollPayload:
        enroll = info.context.services.enrolls.create_enroll(
            caller(info), input.provider_id, input.title, money(input.price, "price")
        )
        return EnrollPayload(enroll=enroll)  # type: ignore[arg-type]

    return mutate(run, lambda errors: EnrollPayload(errors=errors))
