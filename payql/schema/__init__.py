"""The Strawberry schema: the root types composed from the resolvers, and the extensions that guard it."""

from __future__ import annotations

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from payql.resolvers import confirm, create_enroll, create_intent, queries, refund
from payql.schema.errors import CodedErrors
from payql.schema.permissions import IsAuthenticated
from payql.schema.types import Connection, CreditPackage, Enroll, Payment
from payql.settings import Settings


@strawberry.type
class Query:
    packages: list[CreditPackage] = strawberry.field(resolver=queries.packages, description="The credit catalogue.")
    payments: Connection[Payment] = strawberry.field(
        resolver=queries.payments,
        permission_classes=[IsAuthenticated],
        description="The caller's payments as payer or payee, newest first; an admin sees all.",
    )
    payment: Payment | None = strawberry.field(resolver=queries.payment, permission_classes=[IsAuthenticated])
    enroll: Enroll | None = strawberry.field(resolver=queries.enroll, permission_classes=[IsAuthenticated])
    enrolls: Connection[Enroll] = strawberry.field(resolver=queries.enrolls, permission_classes=[IsAuthenticated])


@strawberry.type
class Mutation:
    create_intent = strawberry.mutation(resolver=create_intent.create_intent, permission_classes=[IsAuthenticated])
    confirm = strawberry.mutation(resolver=confirm.confirm, permission_classes=[IsAuthenticated])
    refund = strawberry.mutation(resolver=refund.refund, permission_classes=[IsAuthenticated])
    create_enroll = strawberry.mutation(resolver=create_enroll.create_enroll, permission_classes=[IsAuthenticated])


class Schema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        """Expected errors are answers, not incidents: `CodedErrors` logs the unexpected ones with the request id."""


def build_schema(settings: Settings) -> strawberry.Schema:
    return Schema(
        query=Query,
        mutation=Mutation,
        config=StrawberryConfig(),
        extensions=[
            # Factories: every operation gets fresh extension instances (operations run on several threads);
            # the parser and validation caches are shared module-level LRUs whatever the instance.
            lambda: QueryDepthLimiter(max_depth=settings.graphql_max_depth),
            lambda: MaxAliasesLimiter(max_alias_count=settings.graphql_max_aliases),
            lambda: MaxTokensLimiter(max_token_count=max(1000, settings.graphql_max_bytes // 10)),
            lambda: ParserCache(maxsize=512),
            lambda: ValidationCache(maxsize=512),
            CodedErrors,
        ],
    )
