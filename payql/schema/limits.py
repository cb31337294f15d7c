"""The query cost limit (`GRAPHQL_MAX_COST`): every field costs 1, and a page field's selection counts once per
item it may return (its `first`, default 20, variables included). Checked after validation, before execution, so
that it sees the variables' values; an operation over the limit never runs. And two guards on what may come in:
no empty selection sets (`StrictSelectionSets`), no NUL character in any string (`NoNulCharacters`)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    VariableNode,
    parse,
    visit,
)
from graphql.language import BREAK, Visitor
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionResult

from payql.services.queries import DEFAULT_PAGE, MAX_PAGE

# The fields that return a page of items: their selection is paid for once per item.
CONNECTIONS = frozenset({"payments", "enrolls", "withdrawals", "creditTransactions"})


def _page_size(field: FieldNode, variables: dict[str, Any]) -> int:
    for argument in field.arguments or ():
        if argument.name.value != "first":
            continue
        value: Any = None
        if isinstance(argument.value, IntValueNode):
            value = int(argument.value.value)
        elif isinstance(argument.value, VariableNode):
            value = variables.get(argument.value.name.value)
        if not isinstance(value, int):
            return DEFAULT_PAGE
        return value if 0 < value <= MAX_PAGE else 1  # out of range: the resolver refuses it (INVALID_INPUT)
    return DEFAULT_PAGE


def query_cost(
    selection_set: SelectionSetNode | None,
    fragments: dict[str, FragmentDefinitionNode],
    variables: dict[str, Any],
    seen: frozenset[str] = frozenset(),
) -> int:
    if selection_set is None:
        return 0
    total = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            children = query_cost(selection.selection_set, fragments, variables, seen)
            size = _page_size(selection, variables) if selection.name.value in CONNECTIONS else 1
            total += 1 + size * children
        elif isinstance(selection, InlineFragmentNode):
            total += query_cost(selection.selection_set, fragments, variables, seen)
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
            fragment = fragments.get(selection.name.value)
            if fragment is not None:
                total += query_cost(fragment.selection_set, fragments, variables, seen | {selection.name.value})
    return total


class CostLimit(SchemaExtension):
    def __init__(self, max_cost: int) -> None:
        self.max_cost = max_cost

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        document: DocumentNode | None = context.graphql_document
        if document is not None and context.result is None:
            fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
            operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
            chosen = [o for o in operations if o.name and o.name.value == context.operation_name] or operations[:1]
            variables = context.variables or {}
            cost = sum(query_cost(operation.selection_set, fragments, variables) for operation in chosen)
            if cost > self.max_cost:
                error = GraphQLError(
                    f"The query cost {cost} exceeds the maximum of {self.max_cost} (a page's fields count once per "
                    "item: ask for smaller pages or fewer fields).",
                    extensions={"code": "QUERY_TOO_COSTLY"},
                )
                context.result = ExecutionResult(data=None, errors=[error])
        yield


class StrictSelectionSets(SchemaExtension):
    """Parse with the spec's grammar, where a selection set has at least one selection. graphql-core 3.3 accepts
    `{ packages {} }` by default, and Strawberry's depth limiter fails on it (`max()` of nothing): the answer was an
    internal error. graphql-core 3.2 never accepted it, and has no such option."""

    def on_operation(self) -> Iterator[None]:
        if _HAS_EMPTY_SELECTION_OPTION:
            options: dict[str, Any] = self.execution_context.parse_options  # type: ignore[assignment]
            options["allow_empty_selection_sets"] = False
        yield


_HAS_EMPTY_SELECTION_OPTION = "allow_empty_selection_sets" in inspect.signature(parse).parameters


class NoNulCharacters(SchemaExtension):
    """No argument of this API has a use for U+0000, and PostgreSQL cannot store it in text: a string literal or a
    variable that holds one is refused with `INVALID_INPUT` before anything runs (it was an internal error on
    PostgreSQL when it reached a query, and stored as is on SQLite)."""

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        document: DocumentNode | None = context.graphql_document
        if context.result is None and (
            _nul_in_variables(context.variables) or _nul_in_literals(context.query, document)
        ):
            error = GraphQLError(
                "Text may not contain the NUL character (U+0000).", extensions={"code": "INVALID_INPUT"}
            )
            context.result = ExecutionResult(data=None, errors=[error])
        yield


class _NulLiteral(Visitor):
    found = False

    def enter_string_value(self, node: StringValueNode, *_: Any) -> Any:
        if "\x00" in node.value:
            self.found = True
            return BREAK
        return None


def _nul_in_literals(query: str | None, document: DocumentNode | None) -> bool:
    # A NUL can only be written as an escape (a raw one is a syntax error): most documents need no walk at all.
    if document is None or query is None or "\\u" not in query:
        return False
    visitor = _NulLiteral()
    visit(document, visitor)
    return visitor.found


def _nul_in_variables(variables: dict[str, Any] | None) -> bool:
    pending: list[Any] = [variables]
    while pending:  # iterative: variables may be nested as deep as the JSON parser allows
        value = pending.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return True
        elif isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return False
