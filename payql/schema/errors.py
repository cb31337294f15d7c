"""How errors reach clients: domain errors keep their code, anything unexpected is masked and logged."""

from __future__ import annotations

import logging
from typing import Any

from graphql import GraphQLError, GraphQLSyntaxError, VariableDefinitionNode, VariableNode
from strawberry.extensions import MaskErrors

from payql.providers.base import ProviderError
from payql.services.errors import DomainError

logger = logging.getLogger("payql.graphql")
INTERNAL = "INTERNAL_SERVER_ERROR"
PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
BAD_USER_INPUT = "BAD_USER_INPUT"


def _about_a_variable(error: GraphQLError) -> bool:
    """graphql-core reports a variable its type refuses (a string for an Int, an unknown enum value, a missing
    required one, a null for an argument that may not be null) at the variable, wrapping the coercion error: a
    client's mistake, not a server fault. A field's own failure is located at the field instead."""
    nodes = error.nodes or ()
    return bool(nodes) and all(isinstance(node, (VariableDefinitionNode, VariableNode)) for node in nodes)


def error_code(error: GraphQLError) -> str | None:
    original = error.original_error
    if isinstance(original, (DomainError, ProviderError)):
        return original.code
    if _about_a_variable(error):
        return BAD_USER_INPUT
    if original is None:
        code = (error.extensions or {}).get("code")
        return str(code) if code else "GRAPHQL_VALIDATION_FAILED"
    if isinstance(original, GraphQLError):  # a permission refusal carries its code in extensions
        code = (original.extensions or {}).get("code")
        return str(code) if code else None
    return None


def _masked(error: GraphQLError, request_id: str | None, message: str) -> GraphQLError:
    logger.error(
        "unexpected error in GraphQL request %s at %s", request_id, error.path, exc_info=error.original_error or error
    )
    return GraphQLError(
        message, nodes=error.nodes, path=error.path, extensions={"code": INTERNAL, "requestId": request_id}
    )


def code_stray_errors(errors: list[GraphQLError], request_id: str | None) -> list[GraphQLError]:
    """Errors that never reached `CodedErrors`: Strawberry returns what an extension's parsing or validation hook
    raises (a syntax error found by `ParserCache`, the token limit, anything unexpected in a hook) without running
    the operation's extensions on it. A syntax error gets `GRAPHQL_PARSE_FAILED`; anything else is masked, as
    `CodedErrors` would have done. Errors that already carry a code are left alone."""
    processed: list[GraphQLError] = []
    for error in errors:
        if (error.extensions or {}).get("code"):
            processed.append(error)
        elif isinstance(error, GraphQLSyntaxError) and error.original_error is None:
            processed.append(
                GraphQLError(
                    error.message,
                    source=error.source,
                    positions=error.positions,
                    extensions={**(error.extensions or {}), "code": PARSE_FAILED},
                )
            )
        else:
            processed.append(_masked(error, request_id, "Internal server error"))
    return processed


class CodedErrors(MaskErrors):
    """`MaskErrors` that also gives every error an `extensions.code`.

    Domain and provider errors show their message and code (a provider error also its `providerCode`: the message
    is payql's own, from `providers.messages`); validation errors are `GRAPHQL_VALIDATION_FAILED`;
    variables their types refuse are `BAD_USER_INPUT` (not logged: the client's mistake); anything else (SQL, SDK,
    a bug) becomes "Internal server error" with code `INTERNAL_SERVER_ERROR` and the request id, after being logged
    with its traceback.
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
                processed.append(_masked(error, request_id, self.error_message))
                continue
            extensions = dict(error.extensions or {})
            extensions["code"] = code
            original = error.original_error
            if isinstance(original, DomainError) and original.field:
                extensions["field"] = original.field
            if isinstance(original, ProviderError) and original.provider_code:
                extensions["providerCode"] = original.provider_code  # the provider's code; the message is payql's
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
