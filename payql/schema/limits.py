"""The query cost limit (`GRAPHQL_MAX_COST`): every field costs 1, and a field that may return several items counts
its selection once per item: a page field (a connection) by its `first` (default 20, variables included), and a
plain list by its cap, or its own `first` when it takes one. Which fields are lists comes from the schema's types,
and the caps from the fields' metadata (`capped` in `types.py`): a list field with neither a cap nor a page counts as
the largest page, so that none is ever free (tests/unit/test_query_cost.py also refuses such a field). Checked
after validation, before execution, so that it sees the variables' values; an operation over the limit never runs.
And two guards on what may come in: no empty selection sets (`StrictSelectionSets`), no NUL character in any
string (`NoNulCharacters`)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLArgument,
    GraphQLError,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    StringValueNode,
    VariableNode,
    get_named_type,
    get_nullable_type,
    is_list_type,
    parse,
    value_from_ast_untyped,
    visit,
)
from graphql.language import BREAK, Visitor
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionResult

from payql.memo import Memo
from payql.services.queries import MAX_PAGE

# Keys of a field's Strawberry metadata: the most items a plain list returns, or that a list is a connection's page
# (its items are paid for by the `first` of the field that returns the connection).
CAP = "payql.cap"
PAGE = "payql.page"
SLICE = "payql.slice"  # the parent's attribute a capped list's resolver slices (schema/execution.py reads it directly)


def _metadata(field: GraphQLField) -> Mapping[str, Any]:
    definition = (field.extensions or {}).get("strawberry-definition")
    metadata = getattr(definition, "metadata", None)
    return metadata if isinstance(metadata, Mapping) else {}


def list_cap(field: GraphQLField) -> int | None:
    cap = _metadata(field).get(CAP)
    return cap if isinstance(cap, int) else None


def paged(field: GraphQLField) -> bool:
    return bool(_metadata(field).get(PAGE))


def _first(node: FieldNode | None, argument: GraphQLArgument, variables: Mapping[str, Any], limit: int) -> int:
    value: Any = argument.default_value
    for given in (node.arguments or ()) if node is not None else ():
        if given.name.value != "first":
            continue
        if isinstance(given.value, IntValueNode):
            value = int(given.value.value)
        elif isinstance(given.value, VariableNode):
            value = variables.get(given.value.name.value, argument.default_value)
    if type(value) is not int:  # null or not a number: execution refuses the variable (BAD_USER_INPUT)
        return limit
    return value if 0 < value <= limit else 1  # out of range: the resolver refuses it (INVALID_INPUT)


def field_weight(field: GraphQLField, node: FieldNode | None = None, variables: Mapping[str, Any] | None = None) -> int:
    """How many times a field's selection counts: its `first` when it takes one (up to its cap, else a page), the
    cap of a plain list, 1 for a connection's page (its connection paid for it) and anything else."""
    cap = list_cap(field)
    if "first" in field.args:
        return _first(node, field.args["first"], variables or {}, cap or MAX_PAGE)
    if not is_list_type(get_nullable_type(field.type)) or paged(field):
        return 1
    return MAX_PAGE if cap is None else cap


def _field(parent: GraphQLNamedType | None, name: str) -> GraphQLField | None:
    # introspection types (`__Type`, reached through a fragment spread like GraphiQL's `...FullType`) weigh nothing
    if isinstance(parent, (GraphQLObjectType, GraphQLInterfaceType)) and not parent.name.startswith("__"):
        field: GraphQLField | None = parent.fields.get(name)
        return field
    return None  # `__typename`, and everything under `__schema` and `__type` (introspection: the schema's size)


def query_cost(
    schema: GraphQLSchema,
    selection_set: SelectionSetNode | None,
    parent: GraphQLNamedType | None,
    fragments: dict[str, FragmentDefinitionNode],
    variables: Mapping[str, Any],
    seen: frozenset[str] = frozenset(),
) -> int:
    if selection_set is None:
        return 0
    total = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            field = _field(parent, selection.name.value)
            inner = get_named_type(field.type) if field is not None else None
            children = query_cost(schema, selection.selection_set, inner, fragments, variables, seen)
            size = 1 if field is None else field_weight(field, selection, variables)
            total += 1 + size * children
        elif isinstance(selection, InlineFragmentNode):
            condition = selection.type_condition
            inner = schema.get_type(condition.name.value) if condition else parent
            total += query_cost(schema, selection.selection_set, inner, fragments, variables, seen)
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
            fragment = fragments.get(selection.name.value)
            if fragment is not None:
                inner = schema.get_type(fragment.type_condition.name.value)
                spread = seen | {selection.name.value}
                total += query_cost(schema, fragment.selection_set, inner, fragments, variables, spread)
    return total


def operation_cost(
    schema: GraphQLSchema, document: DocumentNode, operation_name: str | None, variables: Mapping[str, Any] | None
) -> int:
    """The cost of the operation to run (the named one, else the first), its variables at their values or their
    defaults."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    chosen = [o for o in operations if o.name and o.name.value == operation_name] or operations[:1]
    roots = {
        OperationType.QUERY: schema.query_type,
        OperationType.MUTATION: schema.mutation_type,
        OperationType.SUBSCRIPTION: schema.subscription_type,
    }
    total = 0
    for operation in chosen:
        values = {
            definition.variable.name.value: value_from_ast_untyped(definition.default_value)
            for definition in operation.variable_definitions or ()
            if definition.default_value is not None
        }
        values.update(variables or {})
        root = roots[operation.operation]
        total += query_cost(schema, operation.selection_set, root, fragments, values)
    return total


# The costs of operations whose text has no `$` (so no variable, whose value a cost could depend on), by schema, text
# and operation name: the document parsed from a text is the same every time, and walking it was most of this
# extension's work on every request.
_COSTS: Memo[int] = Memo(512)


class CostLimit(SchemaExtension):
    def __init__(self, max_cost: int) -> None:
        self.max_cost = max_cost

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        document: DocumentNode | None = context.graphql_document
        if document is not None and context.result is None:
            schema = context.schema._schema  # noqa: SLF001 - the graphql-core schema, with the fields' metadata
            text = context.query
            key = (schema, text, context.operation_name) if text is not None and "$" not in text else None
            cost = None if key is None else _COSTS.get(key)
            if cost is None:
                cost = operation_cost(schema, document, context.operation_name, context.variables)
                if key is not None:
                    _COSTS.put(key, cost)
            if cost > self.max_cost:
                error = GraphQLError(
                    f"The query cost {cost} exceeds the maximum of {self.max_cost} (a list's fields count once per "
                    "item it may return: ask for smaller pages, fewer items with `first`, or fewer fields).",
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
