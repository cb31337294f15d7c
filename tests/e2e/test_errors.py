"""Bad input gets a UserError with the right code and leaves nothing half-written."""

from __future__ import annotations

import logging
from collections.abc import Callable

import documents as doc
import pytest
from conftest import make_settings
from flows import book, intent, paid_enroll
from sqlalchemy import func, select
from support import Api, no_change

from payql.app import create_app
from payql.db import Database
from payql.models import Enroll, IdempotencyRecord, Payment, Refund
from payql.settings import Settings


def rows(db: Database, model: type) -> Callable[[], int]:
    def count() -> int:
        with db.read() as session:
            return int(session.scalar(select(func.count()).select_from(model)) or 0)

    return count


def test_unknown_package_and_unknown_enroll_are_not_found(api: Api, db: Database) -> None:
    client = api.user("c1")

    with no_change(rows(db, Payment)):
        missing_package = client.fails(doc.CREATE_INTENT, "NOT_FOUND", input={"packageCode": "gold"})
        client.fails(doc.CREATE_INTENT, "NOT_FOUND", input={"enrollId": "enr_missing"})

    assert missing_package["errors"][0]["field"] == "packageCode"
    assert missing_package["payment"] is None


def test_intent_needs_exactly_one_of_enroll_and_package(api: Api, db: Database) -> None:
    client, provider = api.user("c2"), api.user("p2", "provider")
    enroll_id = book(client, provider)

    with no_change(rows(db, Payment)):
        client.fails(doc.CREATE_INTENT, "INVALID_INPUT", input={})
        client.fails(doc.CREATE_INTENT, "INVALID_INPUT", input={"enrollId": enroll_id, "packageCode": "trial"})
        client.fails(doc.CREATE_INTENT, "INVALID_INPUT", input={"packageCode": "trial", "captureMethod": "MANUAL"})
        client.fails(doc.CREATE_INTENT, "INVALID_INPUT", input={"packageCode": "trial", "returnUrl": "javascript:x"})


@pytest.mark.parametrize(
    ("amount", "currency", "message"),
    [
        ("10.001", "USD", "more than 2 decimals"),
        ("1500.5", "JPY", "more than 0 decimals"),
        ("-5.00", "USD", "positive"),
        ("0", "USD", "positive"),
        ("0.00", "EUR", "positive"),
        ("10.00", "XYZ", "unknown currency"),
        ("1e3", "USD", "not a decimal number"),
        ("ten", "USD", "not a decimal number"),
        # beyond 10^15 minor units: was an internal error (bigint overflow), or on SQLite a float in the books
        ("9999999999999999999", "USD", "is larger than 10000000000000.00 USD"),
        ("92233720368547758.07", "USD", "is larger than 10000000000000.00 USD"),
        ("10000000000000.01", "USD", "is larger than 10000000000000.00 USD"),
    ],
)
def test_bad_prices_are_invalid_input(api: Api, db: Database, amount: str, currency: str, message: str) -> None:
    client, provider = api.user("c3"), api.user("p3", "provider")
    provider.data("{ payments { totalCount } }")

    with no_change(rows(db, Enroll)):
        failed = client.fails(
            doc.CREATE_ENROLL, "INVALID_INPUT", providerId=provider.id, title="Lesson", amount=amount, currency=currency
        )

    assert failed["errors"][0]["field"] == "price"
    assert message in failed["errors"][0]["message"]


def test_the_largest_amount_payql_accepts_is_paid_split_and_refunded_exactly(api: Api) -> None:
    # given an enroll at the maximum price, 10^15 minor units
    client, provider = api.user("c-max"), api.user("p-max", "provider")
    payment = paid_enroll(client, provider, amount="10000000000000.00")
    assert (payment["status"], payment["capturedAmount"]["amount"]) == ("SUCCEEDED", "10000000000000.00")

    # when the provider refunds it all, then every amount stays exact (the db fixture runs `ledger check` after)
    refunded = provider.ok(doc.REFUND, input={"paymentId": payment["id"]})["payment"]
    assert (refunded["status"], refunded["refundedAmount"]["amount"]) == ("REFUNDED", "10000000000000.00")


def test_kwd_and_jpy_prices_keep_their_exponents(api: Api) -> None:
    client, provider = api.user("c4"), api.user("p4", "provider")
    provider.data("{ payments { totalCount } }")

    kwd = client.ok(doc.CREATE_ENROLL, providerId=provider.id, title="A", amount="1.234", currency="KWD")
    jpy = client.ok(doc.CREATE_ENROLL, providerId=provider.id, title="B", amount="1500", currency="jpy")

    assert kwd["enroll"]["price"] == {"amount": "1.234", "currency": "KWD"}
    assert jpy["enroll"]["price"] == {"amount": "1500", "currency": "JPY"}


def test_refund_beyond_what_is_left_or_in_another_currency_is_invalid(api: Api, db: Database) -> None:
    client, provider = api.user("c5"), api.user("p5", "provider")
    payment = paid_enroll(client, provider, amount="50.00")
    provider.ok(doc.REFUND, input={"paymentId": payment["id"], "amount": {"amount": "20.00", "currency": "USD"}})

    with no_change(rows(db, Refund)):
        too_much = provider.fails(
            doc.REFUND,
            "INVALID_INPUT",
            input={"paymentId": payment["id"], "amount": {"amount": "30.01", "currency": "USD"}},
        )
        provider.fails(
            doc.REFUND,
            "INVALID_INPUT",
            input={"paymentId": payment["id"], "amount": {"amount": "1.00", "currency": "EUR"}},
        )
        provider.fails(
            doc.REFUND,
            "INVALID_INPUT",
            input={"paymentId": payment["id"], "amount": {"amount": "1.001", "currency": "USD"}},
        )

    assert "30.00" in too_much["errors"][0]["message"]
    assert too_much["errors"][0]["field"] == "amount"
    left = provider.ok(doc.REFUND, input={"paymentId": payment["id"], "amount": {"amount": "30.00", "currency": "USD"}})
    assert left["payment"]["status"] == "REFUNDED"


def test_refund_of_a_payment_not_captured_is_invalid_state(api: Api, db: Database) -> None:
    client, provider = api.user("c6"), api.user("p6", "provider")
    pending = intent(client, enrollId=book(client, provider))["payment"]

    with no_change(rows(db, Refund)):
        failed = provider.fails(doc.REFUND, "INVALID_STATE", input={"paymentId": pending["id"]})

    assert "PENDING" in failed["errors"][0]["message"]


def test_an_enroll_cannot_get_a_second_open_payment(api: Api, db: Database) -> None:
    client, provider = api.user("c7"), api.user("p7", "provider")
    enroll_id = book(client, provider)
    first = intent(client, enrollId=enroll_id)["payment"]

    with no_change(rows(db, Payment)):
        failed = client.fails(doc.CREATE_INTENT, "INVALID_STATE", input={"enrollId": enroll_id})

    assert first["id"] in failed["errors"][0]["message"]


def test_same_idempotency_key_replays_and_other_input_conflicts(api: Api, db: Database) -> None:
    client, provider = api.user("c8"), api.user("p8", "provider")
    enroll_id = book(client, provider)

    first = intent(client, enrollId=enroll_id, idempotencyKey="k-1")
    again = intent(client, enrollId=enroll_id, idempotencyKey="k-1")

    assert again["payment"]["id"] == first["payment"]["id"]
    assert again["clientSecret"] == first["clientSecret"]
    with no_change(rows(db, Payment)):
        conflict = client.fails(doc.CREATE_INTENT, "CONFLICT", input={"packageCode": "trial", "idempotencyKey": "k-1"})
    assert conflict["errors"][0]["field"] == "idempotencyKey"


def test_refund_idempotency_key_refunds_once(api: Api, db: Database) -> None:
    client, provider = api.user("c9"), api.user("p9", "provider")
    payment = paid_enroll(client, provider)
    refund_input = {
        "paymentId": payment["id"],
        "amount": {"amount": "10.00", "currency": "USD"},
        "idempotencyKey": "r-1",
    }

    first = provider.ok(doc.REFUND, input=refund_input)
    second = provider.ok(doc.REFUND, input=refund_input)

    assert second["refund"]["id"] == first["refund"]["id"]
    assert second["payment"]["refundedAmount"]["amount"] == "10.00"
    assert rows(db, Refund)() == 1
    provider.fails(doc.REFUND, "CONFLICT", input={**refund_input, "amount": {"amount": "11.00", "currency": "USD"}})


def test_a_definitive_error_is_replayed_for_the_same_key(api: Api, db: Database) -> None:
    client = api.user("c10")

    first = client.fails(doc.CREATE_INTENT, "NOT_FOUND", input={"packageCode": "gold", "idempotencyKey": "k-2"})
    again = client.fails(doc.CREATE_INTENT, "NOT_FOUND", input={"packageCode": "gold", "idempotencyKey": "k-2"})

    assert again["errors"] == first["errors"]
    assert rows(db, IdempotencyRecord)() == 1


def test_pagination_arguments_are_checked(api: Api) -> None:
    client = api.user("c11")

    for variables in ({"first": 101}, {"first": -1}, {"after": "%%%"}):
        body = client.gql(doc.PAYMENTS, **variables)
        assert body["errors"][0]["extensions"]["code"] == "INVALID_INPUT", body


def test_idempotency_keys_are_forgotten_after_a_day(api: Api, db: Database) -> None:
    from datetime import UTC, datetime, timedelta  # noqa: PLC0415

    from payql.app import services_of  # noqa: PLC0415

    client = api.user("c12")
    first = intent(client, packageCode="trial", idempotencyKey="day-old")
    service = services_of(api.app).idempotency

    assert service.purge(timedelta(hours=24)) == 0
    assert service.purge(timedelta(hours=24), now=datetime.now(UTC) + timedelta(hours=25)) == 1

    again = intent(client, packageCode="trial", idempotencyKey="day-old")
    assert again["payment"]["id"] != first["payment"]["id"]  # a new operation, as the key is no longer known
    assert rows(db, IdempotencyRecord)() == 1


PAGE_SIZE = "query($f: Int!) { payments(first: $f) { totalCount } }"
BY_STATUS = "query($s: PaymentStatus) { payments(status: $s) { totalCount } }"
CREATE_ENROLL_INPUT = "mutation($input: CreateEnrollInput!) { createEnroll(input: $input) { errors { code } } }"
GRAPHQL_RESPONSE = {"Accept": "application/graphql-response+json"}


@pytest.mark.parametrize(
    ("document", "variables"),
    [
        (PAGE_SIZE, {"f": "3"}),
        (PAGE_SIZE, {"f": 1.5}),
        (PAGE_SIZE, {}),
        (PAGE_SIZE, {"f": None}),
        (BY_STATUS, {"s": "PAID"}),
        (CREATE_ENROLL_INPUT, {"input": {"providerId": "p", "title": "t", "price": {"amount": 40, "currency": "USD"}}}),
        (CREATE_ENROLL_INPUT, {"input": {"providerId": "p", "title": "t", "price": {"currency": "USD"}}}),
    ],
    ids=[
        "string-for-int",
        "float-for-int",
        "missing",
        "null-for-non-null",
        "unknown-enum",
        "number-for-string",
        "missing-field",
    ],
)
def test_variables_that_do_not_match_their_types_are_bad_user_input(
    api: Api, db: Database, caplog: pytest.LogCaptureFixture, document: str, variables: dict[str, object]
) -> None:
    token = api.token("c13")
    headers = {"Authorization": f"Bearer {token}"}

    with no_change(rows(db, Enroll)), caplog.at_level(logging.INFO):
        strict = api.request(
            "POST", "/graphql", json={"query": document, "variables": variables}, headers=headers | GRAPHQL_RESPONSE
        )
        legacy = api.request("POST", "/graphql", json={"query": document, "variables": variables}, headers=headers)

    assert strict.status_code == 400, strict.text
    assert "data" not in strict.json()
    assert legacy.status_code == 200
    for response in (strict, legacy):
        (error,) = response.json()["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT", error
        assert "Variable '$" in error["message"]
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR] == []


def test_a_null_variable_for_an_argument_that_may_not_be_null_is_bad_user_input(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    client = api.user("c14")

    with caplog.at_level(logging.INFO):
        body = client.gql("query($f: Int) { payments(first: $f) { totalCount } }", f=None)

    (error,) = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert "$f" in error["message"]
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR] == []


# Each one a typo of a name the schema has: a field, an argument, a type, an enum value (written in the document and
# sent as a variable) and an input field.
MISSPELLED: list[tuple[str, dict[str, object]]] = [
    ("{ paymens { totalCount } }", {}),
    ("{ payments(frist: 1) { totalCount } }", {}),
    ("query($s: PaymentStatu) { payments(status: $s) { totalCount } }", {}),
    ("{ payments(status: SUCCEEDD) { totalCount } }", {}),
    (BY_STATUS, {"s": "SUCCEEDD"}),
    (CREATE_ENROLL_INPUT, {"input": {"providerId": "p", "title": "t", "price": {"amont": "1", "currency": "USD"}}}),
]


def test_production_errors_suggest_no_names_and_development_ones_do(settings: Settings, db: Database) -> None:
    production = make_settings(settings.database_url, payql_env="production")

    with Api(create_app(production, db=db), production) as api:
        token = api.token("c15")
        hidden = [api.graphql(document, variables, token=token)["errors"] for document, variables in MISSPELLED]
    with Api(create_app(settings, db=db), settings) as api:
        token = api.token("c15")
        shown = [api.graphql(document, variables, token=token)["errors"] for document, variables in MISSPELLED]

    for errors in hidden:
        assert errors, "a misspelled name must be refused"
        assert not any("did you mean" in error["message"].lower() for error in errors), errors
    for errors in shown:
        assert any("Did you mean" in error["message"] for error in errors), errors
