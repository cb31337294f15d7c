"""What the four enroll lifecycle mutations share: call one EnrollService step, return `{ enroll payment errors }`."""

from __future__ import annotations

from collections.abc import Callable

from payql.auth import Principal
from payql.resolvers.common import GQLInfo, caller, mutate
from payql.schema.payloads import EnrollPayload
from payql.services.enrolls import EnrollResult


def enroll_step(info: GQLInfo, step: Callable[[Principal], EnrollResult]) -> EnrollPayload:
    def run() -> EnrollPayload:
        result = step(caller(info))
        return EnrollPayload(enroll=result.enroll, payment=result.payment)  # type: ignore[arg-type]

    return mutate(run, lambda errors: EnrollPayload(errors=errors))
