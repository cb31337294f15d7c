"""Free text is bounded the same way on every database (CONTRACT.md, "Text inputs"): one character over the bound
is INVALID_INPUT naming the field, and nothing is written; at the bound it is stored. A 600-character refund note
was a 500 on PostgreSQL and stored on SQLite; a long rejection reason was cut silently."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import documents as doc
import pytest
from flows import book, paid_enroll
from graphql import GraphQLInputObjectType, GraphQLNamedType, GraphQLString, get_named_type
from sqlalchemy import func, select
from support import Api, User, no_change

from payql.db import Database
from payql.models import Base
from payql.schema import build_schema
from payql.settings import Settings

# Strings that are parsed or looked up, never stored as given: refused by their own rules (amount, currency) or
# simply not found (a package code).
PARSED = {
    ("createIntent", "input.packageCode"),
    ("createEnroll", "input.price.amount"),
    ("createEnroll", "input.price.currency"),
    ("refund", "input.amount.amount"),
    ("refund", "input.amount.currency"),
    ("registerPayoutAccount", "input.currency"),
    ("requestWithdrawal", "input.amount.amount"),
    ("requestWithdrawal", "input.amount.currency"),
}

Send = Callable[[User, str], dict[str, Any]]


def _money(amount: str = "60.00") -> dict[str, str]:
    return {"amount": amount, "currency": "USD"}


# (mutation, argument path) -> (bound, who sends it, how)
BOUNDED: dict[tuple[str, str], tuple[int, str, Send]] = {
    ("createEnroll", "input.title"): (
        200,
        "client",
        lambda u, v: u.gql(doc.CREATE_ENROLL, providerId="provider", title=v, amount="10.00", currency="USD"),
    ),
    ("createIntent", "input.returnUrl"): (
        2048,
        "client",
        lambda u, v: u.gql(doc.CREATE_INTENT, input={"packageCode": "trial", "returnUrl": "https://x.test/" + v[15:]}),
    ),
    ("createIntent", "input.idempotencyKey"): (
        255,
        "client",
        lambda u, v: u.gql(doc.CREATE_INTENT, input={"packageCode": "trial", "idempotencyKey": v}),
    ),
    ("confirm", "paymentMethod"): (
        255,
        "client",
        lambda u, v: u.gql(doc.CONFIRM, paymentId="pay_missing", paymentMethod=v),
    ),
    ("refund", "input.note"): (
        500,
        "provider",
        lambda u, v: u.gql(doc.REFUND, input={"paymentId": "pay_missing", "note": v}),
    ),
    ("refund", "input.idempotencyKey"): (
        255,
        "provider",
        lambda u, v: u.gql(doc.REFUND, input={"paymentId": "pay_missing", "idempotencyKey": v}),
    ),
    ("cancelEnroll", "reason"): (
        500,
        "client",
        lambda u, v: u.gql(doc.CANCEL_ENROLL, id="enr_missing", reason=v),
    ),
    ("spendCredits", "input.reference"): (
        200,
        "client",
        lambda u, v: u.gql(doc.SPEND_CREDITS, input={"credits": 1, "reference": v}),
    ),
    ("spendCredits", "input.idempotencyKey"): (
        255,
        "client",
        lambda u, v: u.gql(doc.SPEND_CREDITS, input={"credits": 1, "idempotencyKey": v}),
    ),
    ("registerPayoutAccount", "input.externalAccountId"): (
        255,
        "provider",
        lambda u, v: u.gql(doc.REGISTER_PAYOUT_ACCOUNT, input={"provider": "YOOKASSA", "externalAccountId": v}),
    ),
    ("requestWithdrawal", "input.idempotencyKey"): (
        255,
        "provider",
        lambda u, v: u.gql(doc.REQUEST_WITHDRAWAL, input={"amount": _money(), "idempotencyKey": v}),
    ),
    ("rejectWithdrawal", "reason"): (
        500,
        "admin",
        lambda u, v: u.gql(doc.REJECT_WITHDRAWAL, id="wd_missing", reason=v),
    ),
}


def _strings(prefix: str, named: GraphQLNamedType, seen: frozenset[str] = frozenset()) -> list[str]:
    if named is GraphQLString:
        return [prefix]
    if isinstance(named, GraphQLInputObjectType) and named.name not in seen:
        return [
            path
            for name, field in named.fields.items()
            for path in _strings(f"{prefix}.{name}", get_named_type(field.type), seen | {named.name})
        ]
    return []


def test_every_string_a_mutation_takes_is_bounded_or_parsed(settings: Settings) -> None:
    mutation = build_schema(settings)._schema.mutation_type
    assert mutation is not None
    taken = {
        (field_name, path)
        for field_name, field in mutation.fields.items()
        for argument_name, argument in field.args.items()
        for path in _strings(argument_name, get_named_type(argument.type))
    }

    assert taken == set(BOUNDED) | PARSED


def _all_rows(db: Database) -> Callable[[], dict[str, int]]:
    def count() -> dict[str, int]:
        with db.read() as session:
            return {
                table.name: int(session.scalar(select(func.count()).select_from(table)) or 0)
                for table in Base.metadata.sorted_tables
            }

    return count


@pytest.mark.parametrize(("mutation", "path"), sorted(BOUNDED))
def test_one_character_over_the_bound_is_invalid_input_and_writes_nothing(
    api: Api, db: Database, mutation: str, path: str
) -> None:
    bound, who, send = BOUNDED[(mutation, path)]
    users = {
        "client": api.user("client"),
        "provider": api.user("provider", "provider"),
        "admin": api.user("a", "admin"),
    }
    for user in users.values():
        user.data("{ payments { totalCount } }")

    with no_change(_all_rows(db)):
        body = send(users[who], "x" * (bound + 1))

    (payload,) = body["data"].values()
    (error,) = payload["errors"]
    assert (error["code"], error["field"]) == ("INVALID_INPUT", path.rsplit(".", 1)[-1])
    assert f"at most {bound} characters" in error["message"] or f"1 to {bound} characters" in error["message"]


def test_texts_at_their_bound_are_stored_whole(api: Api, db: Database) -> None:
    # given a paid enroll
    client, provider = api.user("client"), api.user("provider", "provider")
    payment = paid_enroll(client, provider)

    # when the payee refunds part of it with the longest note, and the client books with the longest title and
    # cancels with the longest reason
    refunded = provider.ok(doc.REFUND, input={"paymentId": payment["id"], "amount": _money("1.00"), "note": "n" * 500})
    enroll_id = book(client, provider, title="t" * 200)
    cancelled = client.ok(doc.CANCEL_ENROLL, id=enroll_id, reason="r" * 500)

    # then each is kept whole
    assert refunded["refund"]["status"] == "SUCCEEDED"
    assert cancelled["enroll"]["status"] == "CANCELLED"
    with db.read() as session:
        notes = session.execute(select(Base.metadata.tables["refunds"].c.note)).scalars().all()
        enroll = session.execute(
            select(Base.metadata.tables["enrolls"].c.title, Base.metadata.tables["enrolls"].c.cancel_reason).where(
                Base.metadata.tables["enrolls"].c.id == enroll_id
            )
        ).one()
    assert notes == ["n" * 500]
    assert tuple(enroll) == ("t" * 200, "r" * 500)
