"""The ids added for client caches (`CreditPackage.id`, `Balances.id`, `AccountBalance.id`) are plain fields: they
run from the compiled plans of `payql.schema.execution`, like every other id, not field by field."""

from __future__ import annotations

import pytest
from graphql import GraphQLID, GraphQLObjectType

from payql.schema import build_schema
from payql.schema.execution import _plan
from payql.settings import Settings

SCHEMA = build_schema(Settings(_env_file=None))._schema  # type: ignore[call-arg]


@pytest.mark.parametrize("type_name", ["CreditPackage", "Balances", "AccountBalance"])
def test_the_cache_id_is_a_non_null_id_read_from_the_plan(type_name: str) -> None:
    object_type = SCHEMA.get_type(type_name)
    assert isinstance(object_type, GraphQLObjectType)
    field = object_type.fields["id"]
    assert str(field.type) == "ID!"
    assert _plan(field) == ("id", GraphQLID, None, None, False)


def test_money_has_no_id() -> None:
    money = SCHEMA.get_type("Money")
    assert isinstance(money, GraphQLObjectType)
    assert set(money.fields) == {"amount", "currency"}
