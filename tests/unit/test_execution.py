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
from payql.schema.types import capped


@strawberry.enum
class Color(Enum):
    RED = "red"
    BLUE = "blue"


@strawberry.type
class Leaf:
    name: str
    maybe: str | None
    color: Color


def _first_kept(parent: strawberry.Parent[Any], first: int = 2) -> list[Leaf]:
    kept: list[Leaf] = parent.kept
    return kept[:first]


@strawberry.type
class Branch:
    id: strawberry.ID
    leaf: Leaf
    optional_leaf: Leaf | None
    leaves: list[Leaf]
    kept: strawberry.Private[list[Any]]
    # a capped list whose resolver only slices what the parent holds: the fast path reads `kept` itself
    capped_leaves: list[Leaf] = capped(2, "At most {cap}.", resolver=_first_kept, sliced="kept")

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
        Branch(id=strawberry.ID("1"), leaf=good, optional_leaf=None, leaves=[good], kept=[good, good, good]),
        Branch(
            id=strawberry.ID("2"),
            leaf=Broken(),  # type: ignore[arg-type]
            optional_leaf=Broken(),  # type: ignore[arg-type]
            leaves=[good, Broken()],  # type: ignore[list-item]
            kept=[Broken(), good],
        ),
        Branch(id=strawberry.ID("3"), leaf=good, optional_leaf=Exploding(), leaves=[], kept=[None, good]),  # type: ignore[arg-type]
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
    "{ branches { id cappedLeaves { name color } } }",
    "{ branches { id cappedLeaves(first: 1) { name } } }",
    "{ branches { id cappedLeaves { __typename maybe } } }",
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
        assert _plan(basic) == ("name", GraphQLString, None, None)
        del basic
        with_arguments = GraphQLField(GraphQLString, args={"x": GraphQLArgument(GraphQLString)})
        assert _plan(with_arguments) is None


def test_a_sliced_capped_list_takes_the_fast_path_and_keeps_the_cap() -> None:
    fast = strawberry.Schema(query=Query, execution_context_class=FastExecutionContext)
    field = fast._schema.get_type("Branch").fields["cappedLeaves"]  # type: ignore[union-attr]
    plan = _plan(field)
    assert plan is not None
    assert plan[0] == "kept"

    result = fast.execute_sync("{ branches { id cappedLeaves { name } } }")

    first = result.data["branches"][0]  # type: ignore[index]
    assert first == {"id": "1", "cappedLeaves": [{"name": "a"}, {"name": "a"}]}  # three kept, capped at two
    assert sorted(error.message for error in result.errors or []) == [
        "Cannot return null for non-nullable field Branch.cappedLeaves.",
        "Cannot return null for non-nullable field Leaf.name.",
    ]
