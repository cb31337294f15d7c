"""The query cost limit (`GRAPHQL_MAX_COST`): every field costs 1, and a field that may return several items counts
its selection once per item: a page field (a connection) by its `first` (default 20, variables included), and a
plain list by its cap, or its own `first` when it takes one. Which fields are lists comes from the schema's types,
and the caps from the fields' metadata (`capped` in `types.py`): a list field with neither a cap nor a page counts as
the largest page, so that none is ever free (tests/unit/test_query_cost.py also refuses such a field). Checked
after validation, before execution, so that it sees the variables' values; an operation over the limit never runs.
And two guards on what may come in: no empty selection sets, no NUL character in any string.

All of an operation's guards (these, the parser's limits, cached validation, the error codes) run as one extension,
`Guards`, and on the synchronous path without Strawberry's per-hook machinery (`GuardRunner`)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    ASTValidationRule,
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
    is_leaf_type,
    is_list_type,
    parse,
    value_from_ast_untyped,
    visit,
)
from graphql import ExecutionResult as GraphQLExecutionResult
from graphql.language import BREAK, Visitor
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.types import ExecutionContext, ExecutionResult

from payql.memo import Memo
from payql.schema.context import Context
from payql.schema.errors import CodedErrors
from payql.schema.validation import cached_validation
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


def cost_error(context: ExecutionContext, max_cost: int) -> GraphQLError | None:
    """`QUERY_TOO_COSTLY` when the operation to run costs more than `max_cost`."""
    document: DocumentNode | None = context.graphql_document
    if document is None:
        return None
    schema = context.schema._schema  # noqa: SLF001 - the graphql-core schema, with the fields' metadata
    text = context.query
    key = (schema, text, context.operation_name) if text is not None and "$" not in text else None
    cost = None if key is None else _COSTS.get(key)
    if cost is None:
        cost = operation_cost(schema, document, context.operation_name, context.variables)
        if key is not None:
            _COSTS.put(key, cost)
    if cost <= max_cost:
        return None
    return GraphQLError(
        f"The query cost {cost} exceeds the maximum of {max_cost} (a list's fields count once per "
        "item it may return: ask for smaller pages, fewer items with `first`, or fewer fields).",
        extensions={"code": "QUERY_TOO_COSTLY"},
    )


def nul_error(context: ExecutionContext) -> GraphQLError | None:
    """No argument of this API has a use for U+0000, and PostgreSQL cannot store it in text: a string literal or a
    variable that holds one is refused with `INVALID_INPUT` before anything runs (it was an internal error on
    PostgreSQL when it reached a query, and stored as is on SQLite)."""
    if _nul_in_variables(context.variables) or _nul_in_literals(context.query, context.graphql_document):
        return GraphQLError("Text may not contain the NUL character (U+0000).", extensions={"code": "INVALID_INPUT"})
    return None


# The GraphQL fields of each object type that read only the lean columns of its rows (services.queries.LEAN_COLUMNS,
# through the adapters of schema/nodes.py): an operation that selects no other field of that type anywhere reads its
# rows lean. Keep the two in step (tests/unit/test_lean_reads.py checks each field against the columns it reads).
LEAN_FIELDS: dict[str, frozenset[str]] = {
    "Payment": frozenset(
        {
            "__typename",
            "id",
            "status",
            "amount",
            "capturedAmount",
            "refundedAmount",
            "payerId",
            "payeeId",
            "enroll",
            "package",
            "refunds",
            "disputes",
            "failureCode",
        }
    ),
    "Enroll": frozenset({"__typename", "id", "status", "clientId", "providerId", "title", "price", "payment"}),
    "Refund": frozenset({"__typename", "id", "paymentId", "status", "amount"}),
}
_ABSTRACT = "?abstract"  # a selection on an interface or a union (no GraphQL name has a "?"): no type reads lean


def _selected_fields(
    schema: GraphQLSchema,
    selection_set: SelectionSetNode | None,
    parent: GraphQLNamedType | None,
    fragments: dict[str, FragmentDefinitionNode],
    found: dict[str, set[str]],
    seen: frozenset[str] = frozenset(),
) -> None:
    """The names of the fields selected on each object type (every one: `@skip` and `@include` not applied)."""
    if selection_set is None:
        return
    if parent is not None and not isinstance(parent, GraphQLObjectType) and not is_leaf_type(parent):
        found.setdefault(_ABSTRACT, set())
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            if parent is not None:
                found.setdefault(parent.name, set()).add(selection.name.value)
            field = _field(parent, selection.name.value)
            inner = get_named_type(field.type) if field is not None else None
            _selected_fields(schema, selection.selection_set, inner, fragments, found, seen)
        elif isinstance(selection, InlineFragmentNode):
            condition = selection.type_condition
            inner = schema.get_type(condition.name.value) if condition else parent
            _selected_fields(schema, selection.selection_set, inner, fragments, found, seen)
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
            fragment = fragments.get(selection.name.value)
            if fragment is not None:
                inner = schema.get_type(fragment.type_condition.name.value)
                spread = seen | {selection.name.value}
                _selected_fields(schema, fragment.selection_set, inner, fragments, found, spread)


def lean_types(schema: GraphQLSchema, document: DocumentNode) -> frozenset[str]:
    """The object types whose rows the operations of `document` may read lean: every field selected on them, in
    any operation or fragment, is one of their LEAN_FIELDS."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    roots = {
        OperationType.QUERY: schema.query_type,
        OperationType.MUTATION: schema.mutation_type,
        OperationType.SUBSCRIPTION: schema.subscription_type,
    }
    found: dict[str, set[str]] = {}
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            _selected_fields(schema, definition.selection_set, roots[definition.operation], fragments, found)
        elif isinstance(definition, FragmentDefinitionNode):  # unused ones too: never less than what runs
            inner = schema.get_type(definition.type_condition.name.value)
            _selected_fields(schema, definition.selection_set, inner, fragments, found)
    if _ABSTRACT in found:
        return frozenset()
    return frozenset(name for name, fields in LEAN_FIELDS.items() if found.get(name, set()) <= fields)


# By schema and query text: the document parsed from a text is the same every time.
_LEAN: Memo[frozenset[str]] = Memo(512)


def lean_types_of(context: ExecutionContext) -> frozenset[str]:
    document: DocumentNode | None = context.graphql_document
    if document is None:
        return frozenset()
    schema = context.schema._schema  # noqa: SLF001 - the graphql-core schema
    key = (schema, context.query) if context.query is not None else None
    lean = None if key is None else _LEAN.get(key)
    if lean is None:
        lean = lean_types(schema, document)
        if key is not None:
            _LEAN.put(key, lean)
    return lean


# Strict selection sets: parse with the spec's grammar, where a selection set has at least one selection.
# graphql-core 3.3 accepts `{ packages {} }` by default, and Strawberry's depth limiter fails on it (`max()` of
# nothing): the answer was an internal error. graphql-core 3.2 never accepted it, and has no such option.
_HAS_EMPTY_SELECTION_OPTION = "allow_empty_selection_sets" in inspect.signature(parse).parameters
# Parsed documents by text and parse options, shared by every operation (as Strawberry's `ParserCache`).
_parse = functools.lru_cache(maxsize=512)(parse)


@dataclass(frozen=True, slots=True)
class Limits:
    """What the guards enforce, fixed when the schema is built."""

    rules: tuple[type[ASTValidationRule], ...]  # depth, aliases, introspection in production
    max_tokens: int
    max_cost: int
    hide_suggestions: bool


class Guards(CodedErrors):
    """Every guard of an operation in one extension (it was eight: each hook of each extension is a context manager
    that Strawberry builds per operation, about 390 Python calls a request). In the order they act:

    - the operation starts: the limit rules join validation, the parser gets the token limit and the strict grammar
      (no empty selection sets);
    - parsing: documents cached by text (Strawberry's `ParserCache`);
    - validation: cached by text, with graphql-core's `hide_suggestions` (`validation.cached_validation`);
    - execution: the query cost limit (`GRAPHQL_MAX_COST`, `QUERY_TOO_COSTLY`), then no NUL character (`INVALID_INPUT`),
      then which types' rows the operation may read lean (`lean_types`, told to payql's `Context`);
    - the operation ends: every error gets its code, the unexpected ones masked and logged (`CodedErrors`).

    The stages are plain methods too: `payql.schema.Schema` calls them without Strawberry's hook machinery on its
    synchronous path (`GuardRunner`); the generator hooks are what Strawberry's own runner calls elsewhere."""

    def __init__(self, limits: Limits) -> None:
        super().__init__()
        self.limits = limits

    def start(self) -> None:
        context = self.execution_context
        context.validation_rules = context.validation_rules + self.limits.rules
        options: dict[str, Any] = context.parse_options  # type: ignore[assignment]
        options["max_tokens"] = self.limits.max_tokens
        if _HAS_EMPTY_SELECTION_OPTION:
            options["allow_empty_selection_sets"] = False

    def finish(self) -> None:
        if not self._stream_result_processed:  # MaskErrors.on_operation's end
            result = self.execution_context.result
            if isinstance(result, (GraphQLExecutionResult, ExecutionResult)):
                if result.errors:  # `_process_result`'s own test, without its isinstance of a Protocol (slow)
                    self._process_result(result)
            elif initial_result := getattr(result, "initial_result", None):
                self._process_result(initial_result)

    def parse(self) -> None:
        context = self.execution_context
        context.graphql_document = _parse(context.query, **context.parse_options)

    def validate(self) -> None:
        cached_validation(self.execution_context, hide_suggestions=self.limits.hide_suggestions)

    def execute(self) -> None:
        context = self.execution_context
        if context.result is None:
            error = cost_error(context, self.limits.max_cost) or nul_error(context)
            if error is not None:
                context.result = ExecutionResult(data=None, errors=[error])
            elif isinstance(context.context, Context):
                context.context.lean = lean_types_of(context)

    def on_operation(self) -> Iterator[None]:
        self._stream_result_processed = False
        self.start()
        yield
        self.finish()

    def on_parse(self) -> Iterator[None]:
        self.parse()
        yield

    def on_validate(self) -> Iterator[None]:
        self.validate()
        yield

    def on_execute(self) -> Iterator[None]:
        self.execute()
        yield


class _Stage:
    """A stage of `GuardRunner`: the guard's method on the way in (and `finish` on the way out of the operation when
    nothing was raised, as the generator hook's code after its `yield` runs)."""

    __slots__ = ("enter", "leave")

    def __init__(self, enter: Callable[[], None], leave: Callable[[], None] | None = None) -> None:
        self.enter = enter
        self.leave = leave

    def __enter__(self) -> None:
        self.enter()

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None and self.leave is not None:
            self.leave()

    async def __aenter__(self) -> None:
        self.enter()

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None and self.leave is not None:
            self.leave()


class GuardRunner(SchemaExtensionsRunner):
    """Strawberry's runner for an operation whose only extension is `Guards`: each stage calls the guard directly
    instead of building an exit stack and a generator context manager per hook and per stage."""

    def __init__(self, execution_context: ExecutionContext, guards: Guards) -> None:
        super().__init__(execution_context, [guards])
        self.guards = guards

    def operation(self) -> Any:
        guards = self.guards
        guards._stream_result_processed = False  # noqa: SLF001 - MaskErrors.on_operation's start
        return _Stage(guards.start, guards.finish)

    def parsing(self) -> Any:
        return _Stage(self.guards.parse)

    def validation(self) -> Any:
        return _Stage(self.guards.validate)

    def executing(self) -> Any:
        return _Stage(self.guards.execute)

    def get_extensions_results_sync(self) -> dict[str, Any]:
        return {}  # Guards has no results

    async def get_extensions_results(self, ctx: ExecutionContext) -> dict[str, Any]:
        return dict(ctx.extensions_results)


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
