from __future__ import annotations

import strawberry

from payql.resolvers.common import GQLInfo
from payql.resolvers.enroll_steps import enroll_step
from payql.schema.payloads import EnrollPayload


def accept_enroll(info: GQLInfo, enroll_id: strawberry.ID) -> EnrollPayload:
    """The enroll's provider accepts the booking: PENDING → CONFIRMED."""
    return enroll_step(info, lambda principal: info.context.services.enrolls.accept(principal, enroll_id))
