from __future__ import annotations

import strawberry

from payql.resolvers.common import GQLInfo
from payql.resolvers.enroll_steps import enroll_step
from payql.schema.payloads import EnrollPayload


def mark_enroll_ready(info: GQLInfo, enroll_id: strawberry.ID) -> EnrollPayload:
    """The enroll's provider marks the work done: CONFIRMED → READY."""
    return enroll_step(info, lambda principal: info.context.services.enrolls.mark_ready(principal, enroll_id))
