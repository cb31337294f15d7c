"""A faster execution context: selection sets of plain fields run as compiled plans, not field by field.

graphql-core executes every field of every object through the same machinery: a path, `execute_field`, a resolve-info
object, Strawberry's resolver wrapper, `complete_value`'s dispatch on the type, an awaitable check. Most of a page is
plain fields that only read an attribute of their parent (ids, statuses, amounts, nested objects, lists of objects).

So once per execution and per selection set (graphql-core's own collected fields for an object type: `@include` and
`@skip` already applied with this operation's variables, fragments already merged), this context compiles a plan: for
each response key, how to read and complete it. "Basic" fields (Strawberry's default resolver, no arguments) of a
leaf type, `__typename`, objects, lists of objects, and capped lists whose resolver only slices a list its parent
holds (`Payment.refunds`, declared with `capped(..., sliced=...)`) asked for without `first`, run in a tight loop.
Anything else (a resolver, arguments, a directive on a list, an abstract type, `is_type_of`, field middleware,
`@defer`) goes through graphql-core's own `execute_field`, and so does any surprise at run time (an exception while
reading, a null where the schema forbids one, a value a leaf type does not take as is, an Exception as a value,
something that is not a list): that field is then executed again by graphql-core from the start, so that its data
and errors (messages, locations, paths) are graphql-core's. Errors raised below a planned object or list are handled
exactly as `execute_field` and the list completion do (`handle_field_error` at the same paths).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from graphql import (
    GraphQLBoolean,
    GraphQLField,
    GraphQLID,
    GraphQLInt,
    GraphQLLeafType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLString,
    TypeNameMetaFieldDef,
    Undefined,
    get_nullable_type,
    is_leaf_type,
    is_list_type,
    is_object_type,
)
from graphql.pyutils import Path, gather_with_cancel
from graphql.type.definition import GraphQLResolveInfoHelpers
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import CustomGraphQLEnumType

from payql.memo import Memo
from payql.schema.limits import CAP, SLICE

# How to read a field, decided once per field of the schema: (attribute, leaf type or None, object type or None, the
# cap of a sliced list or None, whether the value is a list). None: graphql-core's full path.
Plan = tuple[str, GraphQLLeafType | None, GraphQLObjectType | None, int | None, bool]
# Kept on the field itself, so that a plan lives and dies with its schema (one is built per app). Kept in a
# module dict keyed by id(field), plans outlived their schema, held its types alive, and a field of a later schema
# allocated at the same address would have taken a freed field's plan.
_PLAN = "_payql_plan"
_NAMES = "_payql_names"
_UNPLANNED = object()
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1


def _basic(field: GraphQLField, definition: Any) -> bool:
    """Whether Strawberry resolves the field by reading the attribute: no resolver, no permission classes or field
    extensions, no exception handlers (Strawberry then gives it `_get_basic_result`), the default `getattr`."""
    return (
        getattr(field.resolve, "__name__", None) == "_get_basic_result"
        and getattr(field.resolve, "_is_default", False)
        and not definition.base_resolver
        and not definition.extensions
        and getattr(definition, "default_resolver", getattr) is getattr
    )


def _plan(field: GraphQLField) -> Plan | None:
    """How to read a field, or None when the field needs graphql-core's full path."""
    known = vars(field).get(_PLAN, _UNPLANNED)
    if known is not _UNPLANNED:
        return known  # type: ignore[no-any-return]
    plan: Plan | None = None
    definition = (field.extensions or {}).get("strawberry-definition")
    inner = get_nullable_type(field.type)
    if definition is not None and not field.args and _basic(field, definition):
        if is_leaf_type(inner):
            plan = (definition.python_name, inner, None, None, False)
        elif is_object_type(inner) and not inner.is_type_of:
            plan = (definition.python_name, None, inner, None, False)
        elif is_list_type(inner) and is_object_type(get_nullable_type(inner.of_type)):
            item = get_nullable_type(inner.of_type)
            if not item.is_type_of:
                plan = (definition.python_name, None, item, None, True)
    elif (
        definition is not None
        and is_list_type(inner)
        and set(field.args) == {"first"}
        and not definition.extensions
        and not getattr(definition, "permission_classes", None)
    ):
        metadata = definition.metadata or {}
        source, cap, item = metadata.get(SLICE), metadata.get(CAP), get_nullable_type(inner.of_type)
        # the resolver slices the parent's list to `first`, whose default is the cap: without `first`, to the cap
        if (
            isinstance(source, str)
            and isinstance(cap, int)
            and field.args["first"].default_value == cap
            and is_object_type(item)
            and not item.is_type_of
        ):
            plan = (source, None, item, cap, True)
    vars(field)[_PLAN] = plan
    return plan


def _enum_names(enum_type: CustomGraphQLEnumType) -> dict[str, str]:
    """The GraphQL name of each member of a Strawberry enum, by the member's Python name: the name Strawberry's
    `coerce_output_value` returns for it (the first GraphQL value equal to the member's value). A member no GraphQL
    value matches is left out (Strawberry's own method then raises, on the full path)."""
    known: dict[str, str] | None = vars(enum_type).get(_NAMES)
    if known is None:
        known = {}
        member: Any
        for member in enum_type.wrapped_cls:
            for name, value in enum_type.values.items():
                if member.value == value.value:
                    known[member._name_] = name
                    break
        vars(enum_type)[_NAMES] = known
    return known


# What a compiled field does.
_FULL, _TYPENAME, _STR, _BOOL, _INT, _ENUM, _LEAF, _OBJECT, _LIST = range(9)
_SURPRISE = object()  # a planned field met something it does not handle: graphql-core executes it


class _Field:
    """One response key of a compiled selection set."""

    __slots__ = (
        "attr",
        "cap",
        "details",
        "enum",
        "field",
        "item_non_null",
        "item_type",
        "key",
        "kind",
        "leaf",
        "names",
        "non_null",
        "object_type",
        "sub",
    )

    def __init__(self, key: str, details: Any, field: GraphQLField, kind: int) -> None:
        self.key = key
        self.details = details
        self.field = field
        self.kind = kind
        self.attr = ""
        self.non_null = isinstance(field.type, GraphQLNonNull)
        self.leaf: GraphQLLeafType | None = None
        self.enum: type | None = None
        self.names: dict[str, str] = {}
        self.object_type: GraphQLObjectType | None = None
        self.item_type: Any = None  # a list's item type, as declared (non-null or not)
        self.item_non_null = False
        self.cap: int | None = None
        # the object's (or the items') compiled selection set, compiled on first use; False: graphql-core's path
        self.sub: list[_Field] | bool | None = None


def _leaf_kind(leaf: GraphQLLeafType) -> int:
    if leaf is GraphQLString or leaf is GraphQLID:
        return _STR  # serialize_string / serialize_id return a str as it is
    if leaf is GraphQLBoolean:
        return _BOOL
    if leaf is GraphQLInt:
        return _INT
    if type(leaf) is CustomGraphQLEnumType:
        return _ENUM
    return _LEAF


def _real(path: Any) -> Any:
    """A response path as graphql-core's `Path`: planned objects and items pass theirs on as plain (previous, key,
    type name) tuples, made into `Path`s only when something needs one (an error, a field graphql-core executes)."""
    if path.__class__ is tuple:
        previous, key, typename = path
        return Path(_real(previous), key, typename)
    return path


# The plans of selection sets whose collection depends on nothing but the document (the operation declares no
# variable, so `@include`/`@skip` are constants), kept on their object type (they live and die with the schema) by the
# ids of their field nodes: the parsed document is cached by its text, so the same query meets the same nodes again.
# Each entry holds its nodes, so that their ids cannot be reused while it is kept; the least recently used go first.
_SHARED = "_payql_shared_plans"
SHARED_PLANS = 256


class FastExecutionContext(StrawberryGraphQLCoreExecutionContext):
    # graphql-core stores these helpers (two bound methods of the context) on the context itself: a reference
    # cycle that left every request's context, variables and collected fields to the cyclic garbage collector.
    # Built on demand instead, they are only read when a resolver's `info` is built (a few fields a request).
    @property
    def async_helpers(self) -> GraphQLResolveInfoHelpers:
        return GraphQLResolveInfoHelpers(gather=self.gather_async_work, track=self.track_async_work)

    @async_helpers.setter
    def async_helpers(self, _helpers: GraphQLResolveInfoHelpers) -> None:
        pass  # the base class's __init__ assigns them: dropped, see the getter

    def execute_collected_subfields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path,
        grouped_field_set: Any,
        new_defer_usages: Any,
        position_context: Any,
    ) -> Any:
        plan = None
        middleware = self.middleware_manager
        if position_context is None and not new_defer_usages and not (middleware and middleware.middlewares):
            plan = self._compiled(parent_type, grouped_field_set)
        if plan is None:
            return super().execute_collected_subfields(
                parent_type, source_value, path, grouped_field_set, new_defer_usages, position_context
            )
        return self._execute_plan(parent_type, source_value, path, plan)

    # compiling

    def _compiled(self, parent_type: GraphQLObjectType, grouped_field_set: Any) -> list[_Field]:
        """The plan of an object type's collected fields: shared across executions when the collection depends on
        the document alone, else once per execution (graphql-core memoizes the collected fields per execution: the
        same dict comes back for every object of a list; the dict is kept alive with its plan, so that its id
        cannot be reused while the plan is cached)."""
        details = [detail for group in grouped_field_set.values() for detail in group]
        if not self.operation.variable_definitions and all(
            detail.defer_usage is None and detail.fragment_variable_values is None for detail in details
        ):
            nodes = tuple(detail.node for detail in details)
            key = tuple(map(id, nodes))
            shared: Memo[tuple[Any, list[_Field]]] | None = vars(parent_type).get(_SHARED)
            if shared is None:
                shared = vars(parent_type).setdefault(_SHARED, Memo(SHARED_PLANS))
            known = shared.get(key)
            if known is None:
                known = (nodes, self._compile(parent_type, grouped_field_set))
                shared.put(key, known)
            return known[1]
        plans: dict[tuple[GraphQLObjectType, int], tuple[Any, list[_Field]]] | None
        plans = self.__dict__.get("_payql_plans")
        if plans is None:
            plans = self.__dict__["_payql_plans"] = {}
        memo = (parent_type, id(grouped_field_set))
        cached = plans.get(memo)
        if cached is None:
            cached = plans[memo] = (grouped_field_set, self._compile(parent_type, grouped_field_set))
        return cached[1]

    def _compile(self, parent_type: GraphQLObjectType, grouped_field_set: Any) -> list[_Field]:
        compiled = [self._compile_field(parent_type, key, details) for key, details in grouped_field_set.items()]
        return [field for field in compiled if field is not None]

    def _compile_field(self, parent_type: GraphQLObjectType, key: str, details: Any) -> _Field | None:
        node = details[0].node
        field = self.schema.get_field(parent_type, node.name.value)
        if field is None:
            return None  # graphql-core leaves it out of the result too
        if field is TypeNameMetaFieldDef:
            return _Field(key, details, field, _TYPENAME)
        plan = _plan(field) if not node.arguments else None
        if plan is None:
            return _Field(key, details, field, _FULL)
        attribute, leaf, object_type, cap, listed = plan
        if listed and any(detail.node.directives for detail in details):
            return _Field(key, details, field, _FULL)  # `@stream` and the like: graphql-core's list completion
        compiled = _Field(key, details, field, _FULL)
        compiled.attr = attribute
        if leaf is not None:
            compiled.kind = _leaf_kind(leaf)
            compiled.leaf = leaf
            if compiled.kind == _ENUM:
                compiled.enum = leaf.wrapped_cls  # type: ignore[union-attr]
                compiled.names = _enum_names(leaf)  # type: ignore[arg-type]
        else:
            compiled.kind = _LIST if listed else _OBJECT
            compiled.object_type = object_type
            compiled.cap = cap
            if listed:
                compiled.item_type = get_nullable_type(field.type).of_type  # type: ignore[union-attr]
                compiled.item_non_null = isinstance(compiled.item_type, GraphQLNonNull)
        return compiled

    def _sub_plan(self, compiled: _Field) -> list[_Field] | bool:
        """The plan of an object field's (or a list's items') selection set, compiled on first use. A plan shared
        across executions keeps its sub-plans too (they depend on the document alone as well)."""
        collected = self.collect_subfields(compiled.object_type, compiled.details)  # type: ignore[arg-type]
        sub: list[_Field] | bool = False  # `@defer` below: graphql-core's path
        if not collected.new_defer_usages:
            sub = self._compiled(compiled.object_type, collected.grouped_field_set)  # type: ignore[arg-type]
        compiled.sub = sub
        return sub

    # executing

    def _execute_plan(  # noqa: C901, PLR0912, PLR0915 - one loop per object: a call per field is what it saves
        self, parent_type: GraphQLObjectType, source: Any, path: Any, plan: list[_Field]
    ) -> Any:
        """What `execute_fields` returns for these fields: their results by response key, or an awaitable of them.
        `path` is the object's: a `Path`, or a tuple `_real` makes one of."""
        results: dict[str, Any] = {}
        awaitable_keys: list[str] | None = None
        typename = parent_type.name
        try:
            for compiled in plan:
                kind = compiled.kind
                key = compiled.key
                if kind == _TYPENAME:
                    results[key] = typename
                    continue
                if kind == _FULL:
                    value = _SURPRISE
                else:
                    try:
                        value = getattr(source, compiled.attr)
                    except Exception:  # noqa: BLE001 - graphql-core reads it again and reports it
                        value = _SURPRISE
                    else:
                        if value is None:
                            if compiled.non_null:
                                value = _SURPRISE  # graphql-core reports the null
                            else:
                                results[key] = None
                                continue
                        elif kind == _STR:
                            if type(value) is str:
                                results[key] = value
                                continue
                            value = self._leaf(compiled, value)
                        elif kind == _ENUM:
                            if type(value) is compiled.enum:
                                name = compiled.names.get(value._name_)  # type: ignore[attr-defined]
                                if name is not None:
                                    results[key] = name
                                    continue
                            value = self._leaf(compiled, value)
                        elif kind == _OBJECT:
                            sub = compiled.sub
                            if sub is None:
                                sub = self._sub_plan(compiled)
                            if sub is False or isinstance(value, Exception):
                                value = _SURPRISE
                            else:  # graphql-core's complete_object_value, errors handled as execute_field does
                                field_path = (path, key, typename)
                                try:
                                    value = self._execute_plan(compiled.object_type, value, field_path, sub)  # type: ignore[arg-type]
                                except Exception as raw_error:  # noqa: BLE001
                                    self.handle_field_error(
                                        raw_error, compiled.field.type, compiled.details, _real(field_path)
                                    )
                                    value = None
                                else:
                                    if value.__class__ is not dict:
                                        value = _Pending(self._await_field(value, compiled, _real(field_path)))
                        elif kind == _LIST:
                            value = self._list(compiled, value, (path, key, typename))
                        else:
                            value = self._leaf(compiled, value)
                if value is _SURPRISE:
                    value = self.execute_field(
                        parent_type, source, compiled.details, Path(_real(path), key, typename), None
                    )
                    if value is Undefined:
                        continue
                    if self.is_awaitable(value):
                        awaitable_keys = [*(awaitable_keys or ()), key]
                elif value.__class__ is _Pending:
                    value = value.awaitable
                    awaitable_keys = [*(awaitable_keys or ()), key]
                results[key] = value
        except Exception:
            if awaitable_keys:  # as execute_fields does: settle what other fields started
                self.settle_in_background([results[key] for key in awaitable_keys])
            raise
        if not awaitable_keys:
            return results
        return self._gather_fields(results, awaitable_keys)

    def _leaf(self, compiled: _Field, value: Any) -> Any:
        """A leaf value completed as graphql-core's `complete_leaf_value` would, or _SURPRISE when it would fail
        (graphql-core then reports the failure)."""
        kind = compiled.kind
        if kind == _BOOL:
            return value if type(value) is bool else _SURPRISE
        if kind == _INT:
            return value if type(value) is int and _INT_MIN <= value <= _INT_MAX else _SURPRISE
        if isinstance(value, Exception):
            return _SURPRISE
        try:
            coerced = compiled.leaf.coerce_output_value(value)  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - graphql-core coerces it again and reports it
            return _SURPRISE
        return _SURPRISE if coerced is None or coerced is Undefined else coerced

    def _list(self, compiled: _Field, value: Any, path: Any) -> Any:  # noqa: C901 - one loop per list
        """A list of objects, completed as `execute_field` and graphql-core's list completion would complete it
        (errors below it handled at its path and its items'), or _SURPRISE before anything ran."""
        if value.__class__ is not list and value.__class__ is not tuple:
            return _SURPRISE  # graphql-core's list completion says what it is
        sub = compiled.sub
        if sub is None:
            sub = self._sub_plan(compiled)
        if sub is False:
            return _SURPRISE
        items = value if compiled.cap is None else value[: compiled.cap]
        for item in items:
            if (item is None and compiled.item_non_null) or isinstance(item, Exception):
                return _SURPRISE  # a null item the schema forbids, an error as an item: graphql-core reports it
        object_type: GraphQLObjectType = compiled.object_type  # type: ignore[assignment]
        completed_items: list[Any] = []
        awaitable_indices: list[int] = []
        try:
            for index, item in enumerate(items):
                if item is None:
                    completed_items.append(None)
                    continue
                item_path = (path, index, None)
                try:
                    completed = self._execute_plan(object_type, item, item_path, sub)  # type: ignore[arg-type]
                except Exception as raw_error:  # noqa: BLE001 - as graphql-core's complete_list_item_value
                    self.handle_field_error(raw_error, compiled.item_type, compiled.details, _real(item_path))
                    completed = None
                if completed is not None and completed.__class__ is not dict:
                    completed = self._await_item(completed, compiled, _real(item_path))
                    awaitable_indices.append(index)
                completed_items.append(completed)
        except Exception as raw_error:  # noqa: BLE001 - handled exactly as graphql-core's execute_field does
            if awaitable_indices:
                self.settle_in_background([completed_items[index] for index in awaitable_indices])
            self.handle_field_error(raw_error, compiled.field.type, compiled.details, _real(path))
            return None
        if not awaitable_indices:
            return completed_items
        gathered = self._gather_items(completed_items, awaitable_indices)
        return _Pending(self._await_field(gathered, compiled, _real(path)))

    # awaitables: only when a field graphql-core executed returned one (never with payql's synchronous resolvers)

    async def _gather_fields(self, results: dict[str, Any], keys: list[str]) -> dict[str, Any]:
        results.update(zip(keys, await _gather([results[key] for key in keys]), strict=True))
        return results

    async def _gather_items(self, items: list[Any], indices: list[int]) -> list[Any]:
        for index, value in zip(indices, await _gather([items[index] for index in indices]), strict=True):
            items[index] = value
        return items

    async def _await_field(self, completed: Awaitable[Any], compiled: _Field, path: Path) -> Any:
        try:
            return await completed
        except Exception as raw_error:  # noqa: BLE001 - as graphql-core's execute_field
            self.handle_field_error(raw_error, compiled.field.type, compiled.details, path)
            return None

    async def _await_item(self, completed: Awaitable[Any], compiled: _Field, path: Path) -> Any:
        try:
            return await completed
        except Exception as raw_error:  # noqa: BLE001 - as graphql-core's complete_list_item_value
            self.handle_field_error(raw_error, compiled.item_type, compiled.details, path)
            return None


class _Pending:
    """An awaitable result of a planned field (marks it apart from values, which may be anything)."""

    __slots__ = ("awaitable",)

    def __init__(self, awaitable: Awaitable[Any]) -> None:
        self.awaitable = awaitable


async def _gather(awaitables: list[Awaitable[Any]]) -> list[Any]:
    """graphql-core's own: one awaitable is awaited, several gathered (cancelling the others on a failure)."""
    if len(awaitables) == 1:
        return [await awaitables[0]]
    return list(await gather_with_cancel(*awaitables))
