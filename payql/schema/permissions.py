from __future__ import annotations

from typing import Any

from strawberry.permission import BasePermission
from strawberry.types import Info

from payql.schema.context import Context


class IsAuthenticated(BasePermission):
    """A valid bearer token is required; otherwise a GraphQL error with `extensions.code = UNAUTHENTICATED` that
    says why (missing, expired, bad signature...)."""

    message = "authentication required"
    error_extensions = {"code": "UNAUTHENTICATED"}

    def has_permission(self, source: Any, info: Info[Context, None], **kwargs: Any) -> bool:
        info.context.require_principal()  # raises Unauthenticated with the token's problem
        return True
