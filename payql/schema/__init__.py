"""The Strawberry schema: the root types composed from the resolvers, and the extensions that guard it."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import DisableIntrospection, MaxAliasesLimiter, QueryDepthLimiter, SchemaExtension
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext, ExecutionResult

from payql import logs
from payql.resolvers import (
    accept_enroll,
    approve_withdrawal,
    cancel_enroll,
    confirm,
    confirm_enroll,
    create_enroll,
    create_intent,
    mark_enroll_ready,
    queries,
    refund,
    register_payout_account,
    reject_payout_account,
    reject_withdrawal,
    request_withdrawal,
    spend_credits,
    subscriptions,
    verify_payout_account,
)
from payql.resolvers import balances as balance_resolvers
from payql.schema.errors import code_stray_errors
from payql.schema.execution import FastExecutionContext
from payql.schema.limits import GuardRunner, Guards, Limits
from payql.schema.permissions import IsAuthenticated
from payql.schema.types import (
    Balances,
    Connection,
    CreditPackage,
    CreditTransaction,
    Dispute,
    Enroll,
    Payment,
    PayoutAccount,
    PlatformBalance,
    Withdrawal,
    capped,
)
from payql.services.queries import CURRENCIES_CAP, LIST_CAP
from payql.settings import Settings


@strawberry.type
class Query:
    packages: list[CreditPackage] = capped(LIST_CAP, "The credit catalogue. At most {cap}.", resolver=queries.packages)
    payments: Connection[Payment] = strawberry.field(
        resolver=queries.payments,
        permission_classes=[IsAuthenticated],
        description="The caller's payments as payer or payee, newest first; an admin sees all.",
    )
    payment: Payment | None = strawberry.field(resolver=queries.payment, permission_classes=[IsAuthenticated])
    enroll: Enroll | None = strawberry.field(resolver=queries.enroll, permission_classes=[IsAuthenticated])
    enrolls: Connection[Enroll] = strawberry.field(resolver=queries.enrolls, permission_classes=[IsAuthenticated])
    balances: Balances = strawberry.field(resolver=balance_resolvers.balances, permission_classes=[IsAuthenticated])
    credit_transactions: Connection[CreditTransaction] = strawberry.field(
        resolver=queries.credit_transactions,
        permission_classes=[IsAuthenticated],
        description="The caller's credit ledger, newest first.",
    )
    withdrawals: Connection[Withdrawal] = strawberry.field(
        resolver=queries.withdrawals, permission_classes=[IsAuthenticated], description="Own; an admin sees all."
    )
    disputes: Connection[Dispute] = strawberry.field(
        resolver=queries.disputes,
        permission_classes=[IsAuthenticated],
        description="Chargebacks on the caller's earnings (as payee), newest first; an admin sees all.",
    )
    payout_accounts: list[PayoutAccount] = capped(
        LIST_CAP,
        "Own; an admin sees all. The oldest first. At most {cap}: `first` asks for fewer.",
        resolver=queries.payout_accounts,
        permission_classes=[IsAuthenticated],
    )
    platform_balances: list[PlatformBalance] = capped(
        CURRENCIES_CAP,
        "Admin only. One per currency. At most {cap}: the currencies payql knows.",
        resolver=balance_resolvers.platform_balances,
        permission_classes=[IsAuthenticated],
    )


@strawberry.type
class Mutation:
    create_intent = strawberry.mutation(resolver=create_intent.create_intent, permission_classes=[IsAuthenticated])
    confirm = strawberry.mutation(resolver=confirm.confirm, permission_classes=[IsAuthenticated])
    refund = strawberry.mutation(resolver=refund.refund, permission_classes=[IsAuthenticated])
    create_enroll = strawberry.mutation(resolver=create_enroll.create_enroll, permission_classes=[IsAuthenticated])
    accept_enroll = strawberry.mutation(resolver=accept_enroll.accept_enroll, permission_classes=[IsAuthenticated])
    mark_enroll_ready = strawberry.mutation(
        resolver=mark_enroll_ready.mark_enroll_ready, permission_classes=[IsAuthenticated]
    )
    confirm_enroll = strawberry.mutation(resolver=confirm_enroll.confirm_enroll, permission_classes=[IsAuthenticated])
    spend_credits = strawberry.mutation(resolver=spend_credits.spend_credits, permission_classes=[IsAuthenticated])
    register_payout_account = strawberry.mutation(
        resolver=register_payout_account.register_payout_account, permission_classes=[IsAuthenticated]
    )
    verify_payout_account = strawberry.mutation(
        resolver=verify_payout_account.verify_payout_account, permission_classes=[IsAuthenticated]
    )
    reject_payout_account = strawberry.mutation(
        resolver=reject_payout_account.reject_payout_account, permission_classes=[IsAuthenticated]
    )
    request_withdrawal = strawberry.mutation(
        resolver=request_withdrawal.request_withdrawal, permission_classes=[IsAuthenticated]
    )
    approve_withdrawal = strawberry.mutation(
        resolver=approve_withdrawal.approve_withdrawal, permission_classes=[IsAuthenticated]
    )
    reject_withdrawal = strawberry.mutation(
        resolver=reject_withdrawal.reject_withdrawal, permission_classes=[IsAuthenticated]
    )
    cancel_enroll = strawberry.mutation(resolver=cancel_enroll.cancel_enroll, permission_classes=[IsAuthenticated])


@strawberry.type
class Subscription:
    """Over WebSocket on `/graphql` (graphql-transport-ws): the object now, then again after every committed change.

    Plain fields rather than async generators: `payql.subscriptions` re-runs the operation on each change (the
    resolvers are synchronous, like every other)."""

    payment_updated: Payment = strawberry.field(
        resolver=subscriptions.payment_updated,
        permission_classes=[IsAuthenticated],
        description="The payment now, then after every committed change. Another user's id: NOT_FOUND.",
    )
    enroll_updated: Enroll = strawberry.field(
        resolver=subscriptions.enroll_updated,
        permission_classes=[IsAuthenticated],
        description="The enroll now, then after every committed change. Another user's id: NOT_FOUND.",
    )


class Schema(strawberry.Schema):
    def __init__(self, *args: Any, hide_suggestions: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hide_suggestions = hide_suggestions

    def _get_execute_function(self) -> Callable[..., Any]:
        """graphql-core's `execute`, told to leave suggestions out of the variables' coercion errors (an unknown enum
        value) when the schema hides them: Strawberry has no option for it."""
        execute = super()._get_execute_function()
        return functools.partial(execute, hide_suggestions=True) if self.hide_suggestions else execute

    def execute_sync(self, *args: Any, **kwargs: Any) -> ExecutionResult:
        query = args[0] if args else kwargs.get("query", "")
        logs.note(operation=logs.graphql_operation(query or "", kwargs.get("operation_name")))
        result = super().execute_sync(*args, **kwargs)
        if result.errors:  # what a parsing hook raised skipped the extensions: give it a code too
            context = kwargs.get("context_value")
            result.errors = code_stray_errors(result.errors, getattr(context, "request_id", None))
        logs.note(outcome=logs.graphql_outcome(result.errors, result.data))
        return result

    def create_extensions_runner(
        self, execution_context: ExecutionContext, extensions: list[SchemaExtension]
    ) -> SchemaExtensionsRunner:
        """payql's one extension, `Guards`, run stage by stage without Strawberry's hook machinery."""
        if len(extensions) == 1 and type(extensions[0]) is Guards:
            return GuardRunner(execution_context, extensions[0])
        return super().create_extensions_runner(execution_context, extensions)

    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        """Expected errors are answers, not incidents: `CodedErrors` logs the unexpected ones with the request id."""


def build_schema(settings: Settings) -> strawberry.Schema:
    # The limit rules are classes made once here: the validation cache is keyed by the rules too, so rules made
    # per request (as a fresh QueryDepthLimiter would) would never hit it.
    rules = [
        *QueryDepthLimiter(max_depth=settings.graphql_max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=settings.graphql_max_aliases).validation_rules,
    ]
    if settings.production:  # no introspection in production (GraphiQL is off there too: see the HTTP view)
        rules.extend(DisableIntrospection().validation_rules)
    limits = Limits(
        rules=tuple(rules),
        max_tokens=max(1000, settings.graphql_max_bytes // 10),
        max_cost=settings.graphql_max_cost,
        hide_suggestions=settings.production,
    )
    return Schema(
        hide_suggestions=settings.production,  # no "Did you mean …?" where introspection is off
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        config=StrawberryConfig(),
        execution_context_class=FastExecutionContext,
        # A factory: every operation gets a fresh instance (operations run on several threads); the parser,
        # validation and cost caches are shared module-level LRUs whatever the instance.
        extensions=[lambda: Guards(limits)],
    )
