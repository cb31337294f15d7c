"""Validation with a cache, and without "Did you mean …?" in production.

graphql-core 3.3 can leave suggestions out of its messages (`hide_suggestions`, for validation and for the
coercion of variables), but Strawberry passes that to neither: its `ValidationCache` calls `validate` without it,
and so does its execution. In production a suggestion would name the fields, arguments, types and enum values that
introspection hides there, to anyone who guesses close enough.
"""

from __future__ import annotations

import functools

from graphql import ASTValidationRule, DocumentNode, GraphQLError, GraphQLSchema, validate
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule
from strawberry.types import ExecutionContext

from payql.memo import Memo


@functools.lru_cache(maxsize=512)
def _validate(
    schema: GraphQLSchema,
    document: DocumentNode,
    rules: tuple[type[ASTValidationRule], ...],
    hide_suggestions: bool,
) -> list[GraphQLError]:
    # Strawberry's own rules, as its `validate_document` adds them
    everything = (*rules, MaybeNullValidationRule, OneOfInputValidationRule)
    return validate(schema, document, everything, hide_suggestions=hide_suggestions)


# By the query's text: the document parsed from it is the same every time (the parse options are fixed), and hashing
# a text is free where hashing a document walks all of its nodes.
_BY_TEXT: Memo[list[GraphQLError]] = Memo(512)


def cached_validation(context: ExecutionContext, *, hide_suggestions: bool) -> None:
    """Strawberry's `ValidationCache`, with graphql-core's `hide_suggestions` (the cache is keyed by it too): sets
    the context's `pre_execution_errors` (an empty list when the document is valid)."""
    document = context.graphql_document
    if document is None:  # always parsed by now; None leaves it to Strawberry
        return
    schema = context.schema._schema  # noqa: SLF001 - the graphql-core schema, as ValidationCache reads it
    rules = context.validation_rules
    if context.query is None:
        context.pre_execution_errors = _validate(schema, document, rules, hide_suggestions)
        return
    key = (schema, context.query, rules, hide_suggestions)
    errors = _BY_TEXT.get(key)
    if errors is None:
        errors = _validate.__wrapped__(schema, document, rules, hide_suggestions)
        _BY_TEXT.put(key, errors)
    context.pre_execution_errors = errors
