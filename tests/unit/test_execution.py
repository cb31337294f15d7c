"""The fast execution context answers exactly as graphql-core's own: data, nulls and errors alike."""

from __future__ import annotations

from enum import Enum
from types import SimpleNamespace
from typing import Any

import pytest
import strawberry
from graphql import GraphQLArgument, GraphQLField, GraphQLString
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from payql.schema.execution import FastExecutionContext, _plan


@strawberry.enum
class Color(Enum):
    RED = "red"
    BLUE = "blue"


@strawberry.type
class Leaf:
    name: str
    maybe: str | None
    color: Color


@strawberry.type
class Branch:
    id: strawberry.ID
    leaf: Leaf
    optional_leaf: Leaf | None
    leaves: list[Leaf]

    @strawberry.field
    def shout(self, word: str) -> str:
        return word.upper()


class Broken:
    """Stands in for a Leaf whose attributes fail or break the schema's promises."""

    name = None  # a null where the schema says String!
    maybe = "fine"
    color = Color.BLUE


class Exploding:
    @property
    def name(self) -> str:
        raise RuntimeError("boom")

    maybe = None
    color = Color.RED


def branches() -> list[Any]:
    good = Leaf(name="a", maybe=None, color=Color.RED)
    return [
        Branch(id=strawberry.ID("1"), leaf=good, optional_leaf=None, leaves=[good]),
        Branch(id=strawberry.ID("2"), leaf=Broken(), optional_leaf=Broken(), leaves=[good, Broken()]),  # type: ignore[arg-type]
        Branch(id=strawberry.ID("3"), leaf=good, optional_leaf=Exploding(), leaves=[]),  # type: ignore[arg-type]
    ]


@strawberry.type
class Query:
    @strawberry.field
    def branches(self) -> list[Branch | None]:
        return branches()


QUERIES = [
    '{ branches { id leaf { name maybe color } leaves { name color } shout(word: "hi") } }',
    "{ branches { id optionalLeaf { name maybe color } } }",
    "{ branches { __typename id leaf { __typename color } } }",
]


@pytest.mark.parametrize("query", QUERIES)
def test_fast_context_matches_graphql_core(query: str) -> None:
    fast = strawberry.Schema(query=Query, execution_context_class=FastExecutionContext)
    plain = strawberry.Schema(query=Query, execution_context_class=StrawberryGraphQLCoreExecutionContext)

    got, expected = fast.execute_sync(query), plain.execute_sync(query)

    assert got.data == expected.data
    assert [e.formatted for e in got.errors or []] == [e.formatted for e in expected.errors or []]


def test_the_cases_above_do_produce_errors_and_nulls() -> None:
    result = strawberry.Schema(query=Query, execution_context_class=FastExecutionContext).execute_sync(QUERIES[1])

    assert result.data == {
        "branches": [
            {"id": "1", "optionalLeaf": None},
            {"id": "2", "optionalLeaf": None},
            {"id": "3", "optionalLeaf": None},
        ]
    }
    messages = sorted(error.message for error in result.errors or [])
    assert messages == ["Cannot return null for non-nullable field Leaf.name.", "boom"]


def _basic_field() -> GraphQLField:
    """A field as Strawberry makes a plain attribute: the default resolver, no arguments, a leaf type."""

    def resolve(*_: Any) -> None: ...

    resolve._is_default = True  # type: ignore[attr-defined]
    definition = SimpleNamespace(python_name="name")
    return GraphQLField(GraphQLString, resolve=resolve, extensions={"strawberry-definition": definition})


def test_a_field_never_takes_the_plan_of_a_freed_field() -> None:
    # Addresses of freed objects are reused at once: a plan cached by id(field) was handed to the next field made
    # at the same address, whatever it was (one built by a later schema, say).
    for _ in range(50):
        basic = _basic_field()
        assert _plan(basic) == ("name", GraphQLString, None)
        del basic
        with_arguments = GraphQLField(GraphQLString, args={"x": GraphQLArgument(GraphQLString)})
        assert _plan(with_arguments) is None
