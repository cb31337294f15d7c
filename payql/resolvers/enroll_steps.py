"""What the four enroll lifecycle mutations share: call one EnrollService step, return `{ enroll payment errors }`."""

from __future__ import annotations

from collections.abc import Callable

from payql.auth import Principal
from payql.resolvers.common import GQLInfo, caller, mutate
from payql.schema.nodes import enroll_node, payment_node
from payql.schema.payloads import EnrollPayload
from payql.services.enrolls import EnrollResult


def enroll_step(info: GQLInfo, step: Callable[[Principal], EnrollResult]) -> EnrollPayload:
    def run() -> EnrollPayload:
        result = step(caller(info))
        loaders = info.context.loaders
        return EnrollPayload(enroll=enroll_node(loaders, result.enroll), payment=payment_node(loaders, result.payment))

    return mutate(run, lambda errors: EnrollPayload(errors=errors))
