from __future__ import annotations

import strawberry

from payql.resolvers.common import GQLInfo
from payql.resolvers.enroll_steps import enroll_step
from payql.schema.payloads import EnrollPayload


def cancel_enroll(info: GQLInfo, enroll_id: strawberry.ID, reason: str | None = None) -> EnrollPayload:
    """Client, provider or admin, before completion: voids the hold or refunds the captured payment."""
    return enroll_step(info, lambda principal: info.context.services.enrolls.cancel(principal, enroll_id, reason))
