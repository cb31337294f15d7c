"""Validation with a cache, and without "Did you mean …?" in production.

graphql-core 3.3 can leave suggestions out of its messages (`hide_suggestions`, for validation and for the
coercion of variables), but Strawberry passes that to neither: its `ValidationCache` calls `validate` without it,
and so does its execution. In production a suggestion would name the fields, arguments, types and enum values that
introspection hides there, to anyone who guesses close enough.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

from graphql import ASTValidationRule, DocumentNode, GraphQLError, GraphQLSchema, validate
from strawberry.extensions import SchemaExtension
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule


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


class CachedValidation(SchemaExtension):
    """Strawberry's `ValidationCache`, with graphql-core's `hide_suggestions` (the cache is keyed by it too)."""

    def __init__(self, *, hide_suggestions: bool) -> None:
        self.hide_suggestions = hide_suggestions

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if context.graphql_document is not None:  # always parsed by now; None leaves it to Strawberry
            context.pre_execution_errors = _validate(
                context.schema._schema,  # noqa: SLF001 - the graphql-core schema, as ValidationCache reads it
                context.graphql_document,
                context.validation_rules,
                self.hide_suggestions,
            )
        yield
