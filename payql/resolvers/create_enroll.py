from __future__ import annotations

from payql.resolvers.common import GQLInfo, caller, money, mutate
from payql.schema.inputs import CreateEnrollInput
from payql.schema.nodes import enroll_node
from payql.schema.payloads import EnrollPayload


def create_enroll(info: GQLInfo, input: CreateEnrollInput) -> EnrollPayload:  # noqa: A002 - the contract's name
    def run() -> EnrollPayload:
        enroll = info.context.services.enrolls.create_enroll(
            caller(info), input.provider_id, input.title, money(input.price, "price")
        )
        return EnrollPayload(enroll=enroll_node(info.context.loaders, enroll))

    return mutate(run, lambda errors: EnrollPayload(errors=errors))
