"""The fast execution context answers exactly as graphql-core's own: data (keys in the same order), nulls and errors
(messages, locations, paths, in the same order) alike, for every shape a selection set can take."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import Enum, StrEnum
from types import SimpleNamespace
from typing import Any

import pytest
import strawberry
from graphql import GraphQLArgument, GraphQLField, GraphQLString
from strawberry.extensions import ParserCache
from strawberry.permission import BasePermission
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from payql.schema.execution import FastExecutionContext, _plan
from payql.schema.types import capped


@strawberry.enum
class Color(Enum):
    RED = "red"
    BLUE = "blue"


@strawberry.enum
class Size(StrEnum):
    S = "s"
    M = "m"


class Deny(BasePermission):
    message = "denied"

    def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
        return False


@strawberry.type
class Leaf:
    name: str
    maybe: str | None
    color: Color
    size: Size | None
    count: int | None
    flag: bool | None
    ident: strawberry.ID | None
    when: datetime | None
    child: Leaf | None
    # a plain attribute behind a permission: Strawberry still runs the check, so must the fast path
    secret: str | None = strawberry.field(permission_classes=[Deny])

    @strawberry.field
    async def loud(self) -> str:
        await asyncio.sleep(0)
        if not isinstance(self.name, str):
            raise TypeError("no name to shout")
        return self.name.upper()


@strawberry.interface
class Pet:
    name: str


@strawberry.type
class Dog(Pet):
    barks: bool


def _first_kept(parent: strawberry.Parent[Any], first: int = 2) -> list[Leaf]:
    kept: list[Leaf] = parent.kept
    return kept[:first]


def _leaves(parent: strawberry.Parent[Any]) -> Iterator[Leaf]:
    yield from parent.kept


@strawberry.type
class Branch:
    id: strawberry.ID
    leaf: Leaf
    optional_leaf: Leaf | None
    leaves: list[Leaf]
    maybe_leaves: list[Leaf | None] | None
    some_leaves: list[Leaf] | None
    kept: strawberry.Private[list[Any]]
    # a capped list whose resolver only slices what the parent holds: the fast path reads `kept` itself
    capped_leaves: list[Leaf] = capped(2, "At most {cap}.", resolver=_first_kept, sliced="kept")
    generated: list[Leaf] = strawberry.field(resolver=_leaves)
    pet: Pet | None
    pets: list[Pet]

    @strawberry.field
    def shout(self, word: str) -> str:
        return word.upper()

    @strawberry.field
    async def later(self) -> Leaf | None:
        await asyncio.sleep(0)
        return self.optional_leaf

    @strawberry.field
    async def later_name(self) -> str:
        await asyncio.sleep(0)
        return self.leaf.name


WHEN = datetime(2026, 1, 1, tzinfo=UTC)


def leaf(**values: Any) -> Any:
    fields = {
        "name": "a",
        "maybe": None,
        "color": Color.RED,
        "size": Size.S,
        "count": 3,
        "flag": True,
        "ident": "7",
        "when": WHEN,
        "child": None,
        "secret": "s",
    }
    return SimpleNamespace(**{**fields, **values})


class Exploding:
    """A Leaf whose attributes fail."""

    @property
    def name(self) -> str:
        raise RuntimeError("boom")

    @property
    def child(self) -> Any:
        raise RuntimeError("no child")

    maybe = None
    color = Color.RED
    size = None
    count = flag = ident = when = None
    secret = "s"


def partial() -> Any:
    """A Leaf without some of its attributes (a nullable one among them)."""
    missing = leaf()
    del missing.size, missing.child
    return missing


def branches() -> list[Any]:
    good = leaf(child=leaf(name="b", child=leaf(name="c")))
    odd = leaf(  # values graphql-core coerces: the fast path leaves them to it
        name=5,
        maybe=Color.BLUE,
        color="red",
        size="m",
        count=True,
        flag=1,
        ident=42,
        child=leaf(name=None),
    )
    bad = leaf(  # values graphql-core refuses
        name=None,
        count=2**40,
        flag="yes",
        ident=[1],
        color=Size.S,
        when="not a date",
        maybe=ValueError("an error as a value"),
    )
    made = [
        SimpleNamespace(
            id="1",
            leaf=good,
            optional_leaf=None,
            leaves=[good, odd],
            maybe_leaves=[good, None, partial()],
            kept=[good, good, good],
            pet=Dog(name="rex", barks=True),
            pets=[Dog(name="rex", barks=True)],
        ),
        SimpleNamespace(
            id="2",
            leaf=bad,
            optional_leaf=bad,
            leaves=[good, bad],
            maybe_leaves=[bad, Exploding()],
            kept=[bad, good],
            pet=None,
            pets=[],
        ),
        SimpleNamespace(
            id=3,
            leaf=good,
            optional_leaf=Exploding(),
            leaves=(good,),
            maybe_leaves=None,
            kept=[None, good],
            pet=None,
            pets=[],
        ),
        SimpleNamespace(
            id="4",
            leaf=odd,
            optional_leaf=RuntimeError("an error as an object"),
            leaves=[good, None],
            maybe_leaves=[RuntimeError("an error as an item")],
            kept=[good],
            pet=None,
            pets=[],
        ),
        SimpleNamespace(
            id="5",
            leaf=good,
            optional_leaf=odd,
            leaves=iter([good]),  # an iterable that is no list
            maybe_leaves="not a list",
            kept=[],
            pet=None,
            pets=[],
        ),
    ]
    for branch in made:
        branch.some_leaves = list(branch.kept)  # a nullable list of non-null items
    return [*made, None]


@strawberry.type
class Query:
    @strawberry.field
    def branches(self) -> list[Branch | None]:
        return branches()

    @strawberry.field
    def first(self) -> Branch:
        return branches()[0]  # type: ignore[no-any-return]

    @strawberry.field
    def second(self) -> Branch:
        return branches()[1]  # type: ignore[no-any-return]


@strawberry.type
class Mutation:
    @strawberry.mutation
    def touch(self) -> Branch:
        return branches()[0]  # type: ignore[no-any-return]


LEAF = "name maybe color size count flag ident when"
QUERIES = [
    '{ branches { id leaf { name maybe color } leaves { name color } shout(word: "hi") } }',
    "{ branches { id optionalLeaf { name maybe color } } }",
    "{ branches { __typename id leaf { __typename color } } }",
    "{ branches { id cappedLeaves { name color } } }",
    "{ branches { id cappedLeaves(first: 1) { name } } }",
    "{ branches { id cappedLeaves { __typename maybe } } }",
    # every leaf type, good and bad values, at every depth
    f"{{ branches {{ id leaf {{ {LEAF} }} }} }}",
    f"{{ branches {{ optionalLeaf {{ {LEAF} child {{ name child {{ name }} }} }} }} }}",
    f"{{ branches {{ leaves {{ {LEAF} }} maybeLeaves {{ {LEAF} }} }} }}",
    f"{{ branches {{ maybeLeaves {{ name child {{ {LEAF} }} }} }} }}",
    f"{{ branches {{ someLeaves {{ {LEAF} }} }} }}",
    # non-null errors propagate to the nearest nullable parent, up to the root
    "{ first { id leaf { name child { name child { name } } } } }",
    "{ second { id leaf { name } } }",
    "{ second { id leaves { name } } }",
    "{ second { maybeLeaves { name } } }",
    f"{{ first {{ leaves {{ {LEAF} }} }} }}",
    # aliases, the same field twice, fields merged from several selections
    "{ branches { a: id b: id leaf { n: name m: name } leaf { color } l2: leaf { size } } }",
    "{ first { leaf { child { name } } leaf { child { color child { name } } } } }",
    # fragments: named, inline, on the object type, nested, repeated
    "{ branches { ...B } } fragment B on Branch { id leaf { ...L } optionalLeaf { ...L } } fragment L on Leaf { name color }",
    "{ branches { ... on Branch { id ... { leaf { name } } } leaf { ... on Leaf { color } } } }",
    # abstract types, and fragments on them
    "{ branches { pet { __typename name ... on Dog { barks } } pets { name ...D } } } fragment D on Dog { barks }",
    # a resolver, arguments, a generator as a list, a permission on a plain attribute
    '{ branches { generated { name } shout(word: "x") leaf { secret name } } }',
    "{ first { leaf { name secret } leaves { secret } } }",
    # directives with constant conditions
    "{ branches { id @include(if: true) leaf @skip(if: false) { name @include(if: false) color } leaves @skip(if: true) { name } } }",
    # typename alone, and aliased
    "{ branches { __typename t: __typename leaf { __typename } } }",
]

VARIABLE_QUERIES = [
    (
        "query($yes: Boolean!, $no: Boolean!) { branches { id @include(if: $yes) leaf @skip(if: $no) { name color @include(if: $no) } leaves @include(if: $yes) { name @skip(if: $yes) count } } }",
        [{"yes": True, "no": False}, {"yes": False, "no": True}, {"yes": True, "no": True}],
    ),
    (
        "query($yes: Boolean!) { first { leaf { ... @include(if: $yes) { name child { name } } color } ...F @skip(if: $yes) } } fragment F on Branch { leaves { name } }",
        [{"yes": True}, {"yes": False}],
    ),
    ("query($n: Int!) { branches { cappedLeaves(first: $n) { name } } }", [{"n": 1}, {"n": 2}]),
    # a variable that decides only below the first level: the levels above collect the same fields either way
    (
        "query($c: Boolean!) { branches { id leaf { name child { name color @include(if: $c) } } } }",
        [{"c": True}, {"c": False}, {"c": True}],
    ),
]

CASES = [(query, None) for query in QUERIES] + [
    (query, variables) for query, many in VARIABLE_QUERIES for variables in many
]

FAST = strawberry.Schema(query=Query, mutation=Mutation, execution_context_class=FastExecutionContext)
# the same document (the same nodes) for the same text: plans of documents without variables are shared
CACHED = strawberry.Schema(
    query=Query,
    mutation=Mutation,
    execution_context_class=FastExecutionContext,
    extensions=[lambda: ParserCache(maxsize=64)],
)
PLAIN = strawberry.Schema(query=Query, mutation=Mutation, execution_context_class=StrawberryGraphQLCoreExecutionContext)


def _same(got: Any, expected: Any) -> None:
    # the same JSON text: keys in the same order, errors (message, locations, path) in the same order
    assert json.dumps(got.data, default=str) == json.dumps(expected.data, default=str)
    assert [e.formatted for e in got.errors or []] == [e.formatted for e in expected.errors or []]


@pytest.mark.parametrize(("query", "variables"), CASES)
def test_fast_context_matches_graphql_core(query: str, variables: dict[str, Any] | None) -> None:
    _same(FAST.execute_sync(query, variable_values=variables), PLAIN.execute_sync(query, variable_values=variables))


def test_plans_kept_across_executions_answer_like_graphql_core() -> None:
    # every case twice, in two orders, through one parser cache: documents without variables reuse their plans,
    # those with variables (`@include`/`@skip` may differ) never do
    for case in [*CASES, *reversed(CASES)]:
        query, variables = case
        _same(
            CACHED.execute_sync(query, variable_values=variables),
            PLAIN.execute_sync(query, variable_values=variables),
        )


@pytest.mark.parametrize(
    "query",
    [
        *QUERIES,
        "{ branches { id later { name child { name } } laterName } }",
        "{ branches { leaves { name } later { name } } }",
        "{ second { leaves { name } later { name } laterName } }",
        "{ first { later { name } leaf { name } } second { later { name } } }",
        # an asynchronous field below planned objects and lists, failing or not, nullable or not on the way up
        "{ branches { optionalLeaf { name loud } leaf { child { loud } } } }",
        "{ branches { maybeLeaves { loud name } cappedLeaves { loud } } }",
        "{ second { optionalLeaf { loud } } }",
        "{ second { leaves { loud } } }",
        "{ branches { someLeaves { loud name } } }",
        "{ branches { id someLeaves { loud } } }",
        "{ first { leaves { loud child { loud } } } second { maybeLeaves { loud } } }",
    ],
)
def test_fast_context_matches_graphql_core_with_asynchronous_resolvers(query: str) -> None:
    _same(asyncio.run(FAST.execute(query)), asyncio.run(PLAIN.execute(query)))


def test_a_mutation_payload_matches_graphql_core() -> None:
    mutation = f"mutation {{ a: touch {{ id leaf {{ {LEAF} }} }} b: touch {{ leaves {{ name }} }} }}"
    _same(FAST.execute_sync(mutation), PLAIN.execute_sync(mutation))


def test_the_cases_above_do_produce_errors_and_nulls() -> None:
    result = FAST.execute_sync(QUERIES[1])

    assert result.data == {
        "branches": [
            {"id": "1", "optionalLeaf": None},
            {"id": "2", "optionalLeaf": None},
            {"id": "3", "optionalLeaf": None},
            {"id": "4", "optionalLeaf": None},
            {"id": "5", "optionalLeaf": {"name": "5", "maybe": "Color.BLUE", "color": "RED"}},
            None,
        ]
    }
    messages = [error.message for error in result.errors or []]
    assert messages == [
        "Cannot return null for non-nullable field Leaf.name.",
        "boom",
        "an error as an object",
    ]


def test_a_permission_on_a_plain_attribute_is_checked() -> None:
    result = FAST.execute_sync("{ first { leaf { secret } } }")

    assert result.data == {"first": {"leaf": {"secret": None}}}
    assert [error.message for error in result.errors or []] == ["denied"]


class Counting(FastExecutionContext):
    """Counts the fields graphql-core executed one by one."""

    executed: list[str] = []

    def execute_field(self, parent_type: Any, source: Any, details: Any, path: Any, position: Any) -> Any:
        self.executed.append(f"{parent_type.name}.{details[0].node.name.value}")
        return super().execute_field(parent_type, source, details, path, position)


def test_plain_fields_run_compiled_and_the_rest_through_graphql_core() -> None:
    schema = strawberry.Schema(query=Query, execution_context_class=Counting)
    Counting.executed.clear()

    result = schema.execute_sync(f'{{ first {{ __typename id leaf {{ {LEAF} child {{ name }} }} shout(word: "x") }} }}')

    assert not result.errors
    # the root field and the resolver: everything else (9 leaves, an object, __typename) ran from the plan
    assert Counting.executed == ["Query.first", "Branch.shout"]


def _basic_field() -> GraphQLField:
    """A field as Strawberry makes a plain attribute: its basic resolver, no arguments, a leaf type."""

    def _get_basic_result(*_: Any) -> None: ...

    _get_basic_result._is_default = True  # type: ignore[attr-defined]
    definition = SimpleNamespace(python_name="name", base_resolver=None, extensions=[], default_resolver=getattr)
    return GraphQLField(GraphQLString, resolve=_get_basic_result, extensions={"strawberry-definition": definition})


def test_a_field_never_takes_the_plan_of_a_freed_field() -> None:
    # Addresses of freed objects are reused at once: a plan cached by id(field) was handed to the next field made
    # at the same address, whatever it was (one built by a later schema, say).
    for _ in range(50):
        basic = _basic_field()
        assert _plan(basic) == ("name", GraphQLString, None, None, False)
        del basic
        with_arguments = GraphQLField(GraphQLString, args={"x": GraphQLArgument(GraphQLString)})
        assert _plan(with_arguments) is None


def test_fields_strawberry_does_not_resolve_by_reading_the_attribute_are_not_planned() -> None:
    leaf_type = FAST._schema.get_type("Leaf")
    assert _plan(leaf_type.fields["secret"]) is None  # type: ignore[union-attr]
    assert _plan(leaf_type.fields["name"]) is not None  # type: ignore[union-attr]
    branch_type = FAST._schema.get_type("Branch")
    assert _plan(branch_type.fields["generated"]) is None  # type: ignore[union-attr]
    assert _plan(branch_type.fields["pet"]) is None  # type: ignore[union-attr]


def test_a_sliced_capped_list_takes_the_fast_path_and_keeps_the_cap() -> None:
    field = FAST._schema.get_type("Branch").fields["cappedLeaves"]  # type: ignore[union-attr]
    plan = _plan(field)
    assert plan is not None
    assert plan[0] == "kept"

    result = FAST.execute_sync("{ branches { id cappedLeaves { name } } }")

    first = result.data["branches"][0]  # type: ignore[index]
    assert first == {"id": "1", "cappedLeaves": [{"name": "a"}, {"name": "a"}]}  # three kept, capped at two
    assert sorted(error.message for error in result.errors or []) == [
        "Cannot return null for non-nullable field Branch.cappedLeaves.",
        "Cannot return null for non-nullable field Leaf.name.",
    ]
