"""A faster execution context: plain attribute fields skip the per-field machinery they do not use.

graphql-core builds a resolve-info object and runs Strawberry's resolver wrapper for every field, even for a field
that only reads an attribute of its parent (most of a page: ids, statuses, amounts). For those "basic" fields,
without arguments, whose type is a scalar, an enum or an object, this context reads the attribute directly and
completes the value as graphql-core would. So does a capped list whose resolver only slices a list its parent holds
(`Payment.refunds`, declared with `capped(..., sliced=...)`), asked for without `first`: its items are completed
one by one as objects. Anything else (other resolvers, arguments, directives on a list, a null where the schema
forbids one, an error) goes through graphql-core's own path, so results and errors are the same.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    GraphQLField,
    GraphQLLeafType,
    GraphQLObjectType,
    Undefined,
    get_nullable_type,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
)
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from payql.schema.limits import CAP, SLICE

# (attribute, leaf type or None for an object type, object type or None, the cap of a sliced list or None) per
# field; None: the full path.
Plan = tuple[str, GraphQLLeafType | None, GraphQLObjectType | None, int | None]
# Kept on the field itself, so that a plan lives and dies with its schema (one is built per app). Kept in a
# module dict keyed by id(field), plans outlived their schema, held its types alive, and a field of a later schema
# allocated at the same address would have taken a freed field's plan.
_PLAN = "_payql_plan"
_UNPLANNED = object()


def _plan(field: GraphQLField) -> Plan | None:
    """How to read a basic field, or None when the field needs graphql-core's full path."""
    known = vars(field).get(_PLAN, _UNPLANNED)
    if known is not _UNPLANNED:
        return known  # type: ignore[no-any-return]
    plan: Plan | None = None
    definition = (field.extensions or {}).get("strawberry-definition")
    inner = get_nullable_type(field.type)
    if definition is not None and getattr(field.resolve, "_is_default", False) and not field.args:
        if is_leaf_type(inner):
            plan = (definition.python_name, inner, None, None)
        elif is_object_type(inner) and not inner.is_type_of:
            plan = (definition.python_name, None, inner, None)
    elif definition is not None and is_list_type(inner) and set(field.args) <= {"first"}:
        metadata = definition.metadata or {}
        source, cap, item = metadata.get(SLICE), metadata.get(CAP), inner.of_type
        if isinstance(source, str) and isinstance(cap, int) and is_non_null_type(item):
            item = item.of_type
            if is_object_type(item) and not item.is_type_of:
                plan = (source, None, item, cap)
    vars(field)[_PLAN] = plan
    return plan


_FULL_PATH = object()


class FastExecutionContext(StrawberryGraphQLCoreExecutionContext):
    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: Any,
        path: Any,
        position_context: Any,
    ) -> Any:
        result = self._fast_field(parent_type, source, field_details_list, path, position_context)
        if result is _FULL_PATH:
            return super().execute_field(parent_type, source, field_details_list, path, position_context)
        return result

    def _fast_field(
        self, parent_type: GraphQLObjectType, source: Any, field_details_list: Any, path: Any, position_context: Any
    ) -> Any:
        node = field_details_list[0].node
        field = self.schema.get_field(parent_type, node.name.value)
        middleware = self.middleware_manager
        plain = field is not None and not node.arguments and not (middleware is not None and middleware.middlewares)
        plan = _plan(field) if plain else None  # type: ignore[arg-type]
        if field is None or plan is None:
            return _FULL_PATH
        name, leaf, object_type, cap = plan
        try:
            result = getattr(source, name)
        except Exception:  # noqa: BLE001 - the full path reports it with its location
            return _FULL_PATH
        if result is None:
            return _FULL_PATH if is_non_null_type(field.type) else None
        if cap is not None:
            return self._sliced_list(field, object_type, field_details_list, path, result[:cap], position_context)
        return self._complete(field, leaf, object_type, field_details_list, path, result, position_context)

    def _complete(
        self,
        field: GraphQLField,
        leaf: GraphQLLeafType | None,
        object_type: GraphQLObjectType | None,
        field_details_list: Any,
        path: Any,
        result: Any,
        position_context: Any,
    ) -> Any:
        try:
            if leaf is not None:  # graphql-core's complete_leaf_value, without the dispatch around it
                coerced = leaf.coerce_output_value(result)
                return _FULL_PATH if coerced is None or coerced is Undefined else coerced
            return self.collect_and_execute_subfields(object_type, field_details_list, path, result, position_context)  # type: ignore[arg-type]
        except Exception as raw_error:  # noqa: BLE001 - handled exactly as graphql-core's execute_field does
            self.handle_field_error(raw_error, field.type, field_details_list, path)
            return None

    def _sliced_list(
        self,
        field: GraphQLField,
        item_type: GraphQLObjectType | None,
        field_details_list: Any,
        path: Any,
        items: list[Any],
        position_context: Any,
    ) -> Any:
        """A capped list of objects its parent holds, completed item by item as graphql-core's list completion
        does (each item's path is the list's path and its index)."""
        if item_type is None or field_details_list[0].node.directives or any(item is None for item in items):
            return _FULL_PATH  # `@stream`, or a null item the schema forbids: graphql-core reports it
        try:
            return [
                self.collect_and_execute_subfields(
                    item_type, field_details_list, path.add_key(index, None), item, position_context
                )
                for index, item in enumerate(items)
            ]
        except Exception as raw_error:  # noqa: BLE001 - handled exactly as graphql-core's execute_field does
            self.handle_field_error(raw_error, field.type, field_details_list, path)
            return None
