"""The query cost limit (`GRAPHQL_MAX_COST`): every field costs 1, and a page field's selection counts once per
item it may return (its `first`, default 20, variables included). Checked after validation, before execution, so
that it sees the variables' values; an operation over the limit never runs."""

from __future__ import annotations

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
    VariableNode,
)
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
