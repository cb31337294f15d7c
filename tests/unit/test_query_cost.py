"""The query cost (`GRAPHQL_MAX_COST`) weighs every list of the schema: a page by its connection's `first`, a plain
list by its cap (or its own `first`), read from the schema's types, so that no list field, today's or a new one, is
free."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import graphql
import strawberry
from graphql import GraphQLField, GraphQLObjectType, get_named_type, get_nullable_type, is_list_type

from payql.schema import build_schema
from payql.schema.limits import field_weight, list_cap, operation_cost, paged
from payql.services.queries import DEFAULT_PAGE, MAX_PAGE
from payql.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"
SETTINGS = Settings(_env_file=None)  # type: ignore[call-arg]
SCHEMA = build_schema(SETTINGS)._schema


def fields(schema: graphql.GraphQLSchema) -> Iterator[tuple[str, GraphQLField]]:
    for type_ in schema.type_map.values():
        if isinstance(type_, GraphQLObjectType) and not type_.name.startswith("__"):
            for name, field in type_.fields.items():
                yield f"{type_.name}.{name}", field


def is_list(field: GraphQLField) -> bool:
    return is_list_type(get_nullable_type(field.type))


def test_every_list_field_is_paged_or_capped_and_weighed() -> None:
    lists = [(where, field) for where, field in fields(SCHEMA) if is_list(field)]
    connections = {where.split(".")[0] for where, field in lists if paged(field)}

    assert len(lists) > 10
    assert len(connections) >= 4
    for where, field in lists:
        if paged(field):  # a connection's edges: paid for by the `first` of the field that returns the connection
            assert field_weight(field) == 1, where
            continue
        cap = list_cap(field)
        assert cap is not None, f"{where} is a list with neither a page nor a cap"
        assert 0 < cap <= MAX_PAGE, where
        assert f"At most {cap}" in (field.description or ""), f"{where} does not document its cap"
        assert field_weight(field) == cap, where
        if "first" in field.args:
            assert field.args["first"].default_value == cap, where
    returning = [(where, field) for where, field in fields(SCHEMA) if get_named_type(field.type).name in connections]
    assert {get_named_type(field.type).name for _, field in returning} == connections
    for where, field in returning:  # a page's selection counts once per item its `first` may return
        assert "first" in field.args, where
        assert field_weight(field) == field.args["first"].default_value == DEFAULT_PAGE, where


def test_a_list_field_without_a_cap_is_never_free() -> None:
    @strawberry.type
    class Query:
        names: list[str]

    schema = strawberry.Schema(query=Query)._schema
    assert schema.query_type is not None

    assert field_weight(schema.query_type.fields["names"]) == MAX_PAGE


def test_variables_and_their_defaults_weigh_at_their_value() -> None:
    document = graphql.parse("query($n: Int! = 100) { payments(first: $n) { edges { node { id } } } }")

    by_default = operation_cost(SCHEMA, document, None, {})
    given = operation_cost(SCHEMA, document, None, {"n": 5})

    assert by_default == 1 + 100 * (1 + 1 + 1)
    assert given == 1 + 5 * (1 + 1 + 1)


def walkthrough() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Try it", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```graphql\n(.*?)```", section, flags=re.DOTALL)


def test_the_readme_walkthrough_costs_less_than_the_default_limit() -> None:
    documents = walkthrough()

    assert len(documents) >= 6
    assert any("refunds" in document for document in documents)
    for document in documents:
        cost = operation_cost(SCHEMA, graphql.parse(document), None, {})
        assert 0 < cost <= SETTINGS.graphql_max_cost, (cost, document)


def _refused_as_too_costly(schema: strawberry.Schema, query: str, variables: dict[str, int] | None = None) -> bool:
    result = schema.execute_sync(query, variable_values=variables)
    return any((error.extensions or {}).get("code") == "QUERY_TOO_COSTLY" for error in result.errors or [])


def test_a_cost_kept_for_a_text_is_the_cost_of_that_text_and_never_of_other_variables() -> None:
    # The cost of a text without variables is kept and refused on every request; a text with variables is weighed
    # at each request's values.
    schema = build_schema(SETTINGS.model_copy(update={"graphql_max_cost": 100}))
    costly = "{ payments(first: 60) { edges { node { id status } } } }"
    cheap = "{ payments(first: 5) { edges { node { id status } } } }"
    variable = "query($n: Int!) { payments(first: $n) { edges { node { id status } } } }"

    assert [_refused_as_too_costly(schema, costly) for _ in range(3)] == [True] * 3
    assert [_refused_as_too_costly(schema, cheap) for _ in range(3)] == [False] * 3
    assert [_refused_as_too_costly(schema, variable, {"n": n}) for n in (5, 60, 5, 60)] == [False, True, False, True]
