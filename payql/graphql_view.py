"""GraphQL over HTTP: `POST /graphql` (and `GET` for queries), executed synchronously in a worker thread.

The resolvers are synchronous (sync SQLAlchemy measured faster than async here, DESIGN.md §10), so a whole
operation (validation, resolvers, provider calls) runs in one worker thread and never blocks the event loop.
Parsed and validated documents are cached by the schema's extensions.

Responses follow the GraphQL-over-HTTP spec where it is cheap to: `application/graphql-response+json` when the
client accepts it (with 400 when execution never started), `application/json` otherwise; a batched request (a
JSON array), a malformed body or a body over `GRAPHQL_MAX_BYTES` (refused before it is read, `payql.http_body`) is
refused with a GraphQL error body and a code; a mutation over GET is 405.

Every request counts against the caller's rate limit before its body is read, refused ones included: a flood of
oversized or malformed bodies is limited like any other, and a caller over the limit costs no more than its headers.
The request id is the one `payql.http_edge` chose (and put on the answer).
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Any

from graphql import GraphQLError, OperationDefinitionNode, parse
from graphql import OperationType as AstOperationType
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from strawberry import Schema
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from payql import graphiql
from payql.auth import AuthError, Principal, principal_from_scope
from payql.http_body import BodyRefused, read_body
from payql.http_edge import request_id_of
from payql.ratelimit import RateLimiter
from payql.schema.context import Context
from payql.services import Services
from payql.workers import Pool, Workers

logger = logging.getLogger("payql.http")

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"


@functools.lru_cache(maxsize=512)
def _operations(query: str) -> tuple[tuple[str | None, bool], ...]:
    """The document's operations as (name, whether it is a mutation); none when it does not parse (validation
    then says why)."""
    try:
        document = parse(query)
    except GraphQLError:
        return ()
    return tuple(
        (node.name.value if node.name else None, node.operation is AstOperationType.MUTATION)
        for node in document.definitions
        if isinstance(node, OperationDefinitionNode)
    )


def _is_mutation(query: str, operation_name: str | None) -> bool:
    """Whether the operation to run is a mutation (which may wait on a provider): it runs on the larger pool."""
    operations = _operations(query)
    if operation_name is None:
        return len(operations) == 1 and operations[0][1]
    return any(name == operation_name and mutation for name, mutation in operations)


# users.roles is a String(255) of the sorted roles joined by commas
ROLES_LENGTH = 255


def _storable(principal: Principal | None, error: AuthError | None) -> tuple[Principal | None, AuthError | None]:
    """A signed token whose subject or roles the users table cannot hold (a NUL, a comma inside a role, more roles
    than fit) is refused like any other bad token, instead of failing when the caller is recorded."""
    if principal is None:
        return None, error
    roles = ",".join(sorted(principal.roles))
    if "\x00" in principal.user_id + roles or any("," in role for role in principal.roles) or len(roles) > ROLES_LENGTH:
        return None, AuthError("the token's 'sub' or 'roles' claim has characters or a length this service refuses")
    return principal, None


def _error_body(message: str, code: str) -> dict[str, Any]:
    return {"errors": [{"message": message, "extensions": {"code": code}}]}


def _operation_refused(
    exc: InvalidOperationTypeError | CannotGetOperationTypeError, media: str, headers: dict[str, str]
) -> Response:
    if isinstance(exc, InvalidOperationTypeError) and exc.operation_type is OperationType.SUBSCRIPTION:
        message = "subscriptions are served over WebSocket on /graphql (graphql-transport-ws)"
        return JSONResponse(_error_body(message, "BAD_REQUEST"), status_code=400, media_type=media, headers=headers)
    if isinstance(exc, InvalidOperationTypeError):
        headers["Allow"] = "POST"
        body = _error_body("mutations are only accepted over POST", "METHOD_NOT_ALLOWED")
        return JSONResponse(body, status_code=405, media_type=media, headers=headers)
    # operationName names none of the document's operations, or there are several and none is named
    return JSONResponse(
        _error_body(exc.as_http_error_reason(), "BAD_REQUEST"), status_code=400, media_type=media, headers=headers
    )


class BadRequest(BodyRefused):
    """A request refused before execution: an HTTP status and a GraphQL error code."""


class GraphQLView:
    def __init__(self, schema: Schema, services: Services, workers: Workers) -> None:
        self.schema = schema
        self.services = services
        self.settings = services.settings
        self._workers = workers
        self.rate_limiter = RateLimiter(self.settings.rate_limit, self.settings.redis_url)

    async def handle(self, request: Request) -> Response:
        request_id = request_id_of(request.scope)
        media = GRAPHQL_RESPONSE if GRAPHQL_RESPONSE in request.headers.get("accept", "") else JSON
        headers: dict[str, str] = {}
        if request.method == "GET" and self._wants_ide(request):
            if self.settings.production:
                return JSONResponse(_error_body("GraphiQL is disabled in production", "NOT_FOUND"), status_code=404)
            return graphiql.page(subscription_path="/graphql")  # the subscriptions' websocket route

        principal, auth_error = _storable(*principal_from_scope(request.scope))
        caller = f"user:{principal.user_id}" if principal else f"ip:{request.client.host if request.client else '-'}"
        if wait := await self.rate_limiter.retry_after(caller):
            headers["Retry-After"] = str(wait)
            body = _error_body(f"too many requests: retry in {wait} s", "RATE_LIMITED")
            return JSONResponse(body, status_code=429, media_type=media, headers=headers)
        try:
            query, variables, operation_name = self._check(await self._read(request))
        except BodyRefused as exc:
            return JSONResponse(
                _error_body(exc.message, exc.code), status_code=exc.status, media_type=media, headers=exc.headers
            )

        context = Context(services=self.services, principal=principal, auth_error=auth_error, request_id=request_id)
        allowed = {OperationType.QUERY} if request.method == "GET" else {OperationType.QUERY, OperationType.MUTATION}

        def execute() -> ExecutionResult:
            try:
                return self.schema.execute_sync(
                    query,
                    variable_values=variables,
                    context_value=context,
                    operation_name=operation_name,
                    allowed_operation_types=allowed,
                )
            finally:
                context.close()

        try:
            pool = Pool.MUTATIONS if _is_mutation(query, operation_name) else Pool.QUERIES
            result = await self._workers.run(pool, execute)
        except (InvalidOperationTypeError, CannotGetOperationTypeError) as exc:
            return _operation_refused(exc, media, headers)

        payload: dict[str, Any] = {}
        if result.errors:
            payload["errors"] = [error.formatted for error in result.errors]
        started = result.data is not None or not result.errors or any(e.path for e in result.errors)
        if started:  # no `data` key when execution never started (parse or validation failure)
            payload["data"] = result.data
        status = 400 if media == GRAPHQL_RESPONSE and not started else 200
        return JSONResponse(payload, status_code=status, media_type=media, headers=headers)

    @staticmethod
    def _wants_ide(request: Request) -> bool:
        return "text/html" in request.headers.get("accept", "") and "query" not in request.query_params

    async def _read(self, request: Request) -> Any:
        if request.method == "GET":
            params: dict[str, Any] = dict(request.query_params)
            if "variables" in params:
                try:
                    params["variables"] = json.loads(params["variables"])
                except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than json can read
                    raise BadRequest(400, "variables must be a JSON object", "BAD_REQUEST") from exc
            return params
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in {JSON, GRAPHQL_RESPONSE}:
            raise BadRequest(415, "send the request as application/json", "UNSUPPORTED_MEDIA_TYPE")
        body = await read_body(
            request, limit=self.settings.graphql_max_bytes, timeout_ms=self.settings.body_read_timeout_ms
        )
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than json can read
            raise BadRequest(400, "the body is not valid JSON", "BAD_REQUEST") from exc

    def _check(self, params: Any) -> tuple[str, dict[str, Any] | None, str | None]:
        if isinstance(params, list):
            raise BadRequest(400, "batched requests are not supported", "BATCHING_NOT_SUPPORTED")
        if not isinstance(params, dict):
            raise BadRequest(400, "the body must be a JSON object", "BAD_REQUEST")
        query = params.get("query")
        variables = params.get("variables")
        operation_name = params.get("operationName")
        if not isinstance(query, str) or not query.strip():
            raise BadRequest(400, "no GraphQL query was given", "BAD_REQUEST")
        if len(query.encode()) > self.settings.graphql_max_bytes:
            message = f"the query is larger than {self.settings.graphql_max_bytes} bytes"
            raise BadRequest(413, message, "PAYLOAD_TOO_LARGE")
        if variables is not None and not isinstance(variables, dict):
            raise BadRequest(400, "variables must be a JSON object", "BAD_REQUEST")
        if operation_name is not None and not isinstance(operation_name, str):
            raise BadRequest(400, "operationName must be a string", "BAD_REQUEST")
        if operation_name is None and len(_operations(query)) > 1:  # the spec: never guess which one to run
            raise BadRequest(400, "the document has several operations: say which in operationName", "BAD_REQUEST")
        return query, variables, operation_name
