from __future__ import annotations

import strawberry

from payql.resolvers.common import GQLInfo
from payql.resolvers.enroll_steps import enroll_step
from payql.schema.payloads import EnrollPayload


def confirm_enroll(info: GQLInfo, enroll_id: strawberry.ID) -> EnrollPayload:
    """The enroll's client confirms: READY → COMPLETED, capturing the held payment and splitting it."""
    return enroll_step(info, lambda principal: info.context.services.enrolls.confirm(principal, enroll_id))
