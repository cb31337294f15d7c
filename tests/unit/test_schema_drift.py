"""The committed schema.graphql is the authoritative SDL: it must be what the code builds."""

from __future__ import annotations

from pathlib import Path

import graphql

from payql.schema import build_schema
from payql.settings import Settings

SDL = Path(__file__).resolve().parents[2] / "schema.graphql"


def test_committed_schema_matches_the_code() -> None:
    printed = build_schema(Settings(_env_file=None)).as_str() + "\n"  # type: ignore[call-arg]

    assert SDL.read_text(encoding="utf-8") == printed, "schema.graphql drifted: run `payql schema > schema.graphql`"


def test_schema_keeps_the_contract_names() -> None:
    schema = graphql.build_schema(SDL.read_text(encoding="utf-8"))
    query, mutation = schema.query_type, schema.mutation_type
    assert query is not None
    assert mutation is not None

    def signature(field: graphql.GraphQLField) -> dict[str, str]:
        return {name: str(arg.type) for name, arg in field.args.items()}

    assert signature(mutation.fields["createIntent"]) == {"input": "CreateIntentInput!"}
    assert signature(mutation.fields["confirm"]) == {"paymentId": "ID!", "paymentMethod": "String"}
    assert signature(mutation.fields["refund"]) == {"input": "RefundInput!"}
    assert signature(mutation.fields["createEnroll"]) == {"input": "CreateEnrollInput!"}
    assert signature(query.fields["payments"]) == {
        "first": "Int!",
        "after": "String",
        "status": "PaymentStatus",
        "purpose": "PaymentPurpose",
    }
    assert "payments(first: Int! = 20," in SDL.read_text(encoding="utf-8")
    money = schema.get_type("Money")
    assert isinstance(money, graphql.GraphQLObjectType)
    assert {name: str(f.type) for name, f in money.fields.items()} == {"amount": "String!", "currency": "String!"}
    assert str(schema.get_type("CreateIntentPayload")) == "CreateIntentPayload"
