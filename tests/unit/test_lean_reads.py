"""Lean reads: a page or loader reads only a table's LEAN_COLUMNS when every field the operation selects on that type
is one of LEAN_FIELDS. Each lean field must read nothing else of its row, and any other field, anywhere in the
document (fragments included), must turn lean reading off for its type."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from graphql import parse

from payql.schema import build_schema
from payql.schema.limits import LEAN_FIELDS, SLICE, lean_types
from payql.schema.nodes import EnrollNode, PaymentNode, RefundNode
from payql.services.queries import LEAN_COLUMNS
from payql.settings import Settings

SCHEMA = build_schema(Settings(_env_file=None))._schema  # type: ignore[call-arg]
LIST_QUERY = (
    "query { payments(first: 20) { totalCount pageInfo { hasNextPage endCursor } edges { node { id status "
    "amount { amount currency } enroll { id title status } refunds { id amount { amount } status } } } } }"
)
NODES: dict[str, tuple[type[Any], str]] = {
    "Payment": (PaymentNode, "payments"),
    "Enroll": (EnrollNode, "enrolls"),
    "Refund": (RefundNode, "refunds"),
}


class LeanRow:
    """A row holding only the lean columns: reading any other one fails."""

    def __init__(self, columns: tuple[str, ...]) -> None:
        for name in columns:
            setattr(self, name, 1 if name.endswith("_minor") else "USD" if name == "currency" else "x")


LOADERS = SimpleNamespace(
    enroll=SimpleNamespace(load=lambda _key: None),
    refunds=SimpleNamespace(load=lambda _key: []),
    disputes=SimpleNamespace(load=lambda _key: []),
    enroll_payment=SimpleNamespace(load=lambda _key: None),
    catalogue=SimpleNamespace(get=lambda _code: None),
)


@pytest.mark.parametrize("type_name", sorted(LEAN_FIELDS))
def test_each_lean_field_reads_only_lean_columns(type_name: str) -> None:
    node_class, table = NODES[type_name]
    row = LeanRow(LEAN_COLUMNS[table])
    node = node_class(row) if node_class is RefundNode else node_class(row, LOADERS)
    graphql_type = SCHEMA.get_type(type_name)
    for name in LEAN_FIELDS[type_name] - {"__typename"}:
        definition = graphql_type.fields[name].extensions["strawberry-definition"]  # type: ignore[union-attr]
        attribute = (definition.metadata or {}).get(SLICE, definition.python_name)
        getattr(node, attribute)  # an AttributeError here: the field reads a column that is not lean


def test_the_bench_list_reads_every_type_lean() -> None:
    assert lean_types(SCHEMA, parse(LIST_QUERY)) == {"Payment", "Enroll", "Refund"}


@pytest.mark.parametrize(
    ("query", "lean"),
    [
        ("{ payments { edges { node { id createdAt enroll { id } } } } }", {"Enroll", "Refund"}),
        ("{ payments { edges { node { id enroll { createdAt } } } } }", {"Payment", "Refund"}),
        ("{ payments { edges { node { ...P } } } } fragment P on Payment { purpose }", {"Enroll", "Refund"}),
        ("{ payments { edges { node { ... on Payment { paidAt } } } } }", {"Enroll", "Refund"}),
        # a fragment that no operation uses still counts: never less than what runs
        ("{ payments { totalCount } } fragment R on Refund { reason }", {"Payment", "Enroll"}),
        ('{ payment(id: "x") { refunds(first: 1) { createdAt } } }', {"Payment", "Enroll"}),
    ],
)
def test_any_other_field_reads_its_type_in_full(query: str, lean: set[str]) -> None:
    assert lean_types(SCHEMA, parse(query)) == lean
