"""How errors reach clients: domain errors keep their code, anything unexpected is masked and logged."""

from __future__ import annotations

import logging
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import MaskErrors

from payql.providers.base import ProviderError
from payql.services.errors import DomainError

logger = logging.getLogger("payql.graphql")
INTERNAL = "INTERNAL_SERVER_ERROR"


def error_code(error: GraphQLError) -> str | None:
    original = error.original_error
    if isinstance(original, (DomainError, ProviderError)):
        return original.code
    if original is None:
        code = (error.extensions or {}).get("code")
        return str(code) if code else "GRAPHQL_VALIDATION_FAILED"
    if isinstance(original, GraphQLError):  # a permission refusal carries its code in extensions
        code = (original.extensions or {}).get("code")
        return str(code) if code else None
    return None


class CodedErrors(MaskErrors):
    """`MaskErrors` that also gives every error an `extensions.code`.

    Domain and provider errors show their message and code; validation errors are `GRAPHQL_VALIDATION_FAILED`;
    anything else (SQL, SDK, a bug) becomes "Internal server error" with code `INTERNAL_SERVER_ERROR` and the
    request id, after being logged with its traceback.
    """

    def __init__(self) -> None:
        super().__init__(error_message="Internal server error")

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        context: Any = self.execution_context.context
        request_id = getattr(context, "request_id", None)
        processed: list[GraphQLError] = []
        for error in errors:
            code = error_code(error)
            if code is None:
                logger.error(
                    "unexpected error in GraphQL request %s at %s",
                    request_id,
                    error.path,
                    exc_info=error.original_error,
                )
                processed.append(
                    GraphQLError(
                        self.error_message,
                        nodes=error.nodes,
                        path=error.path,
                        extensions={"code": INTERNAL, "requestId": request_id},
                    )
                )
                continue
            extensions = dict(error.extensions or {})
            extensions["code"] = code
            original = error.original_error
            if isinstance(original, DomainError) and original.field:
                extensions["field"] = original.field
            processed.append(
                GraphQLError(
                    error.message,
                    nodes=error.nodes,
                    source=error.source,
                    positions=error.positions,
                    path=error.path,
                    extensions=extensions,
                )
            )
        return processed
