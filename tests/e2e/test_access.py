"""Who can see and do what: another user's objects are NOT_FOUND exactly as if they did not exist."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import documents as doc
from flows import book, intent, paid_enroll, paid_package
from support import Api, User, error_codes


def test_a_stranger_sees_neither_the_payment_nor_that_it_exists(api: Api) -> None:
    client, provider, stranger = api.user("c1"), api.user("p1", "provider"), api.user("s1")
    payment = paid_enroll(client, provider)

    missing = stranger.gql(doc.PAYMENT, id="pay_does_not_exist")
    foreign = stranger.gql(doc.PAYMENT, id=payment["id"])

    assert error_codes(foreign) == error_codes(missing) == ["NOT_FOUND"]
    assert foreign["errors"][0]["message"] == missing["errors"][0]["message"]
    assert foreign["data"] == missing["data"] == {"payment": None}
    assert stranger.data(doc.PAYMENTS)["payments"] == {
        "totalCount": 0,
        "pageInfo": {"hasNextPage": False, "endCursor": None},
        "edges": [],
    }
    assert error_codes(stranger.gql(doc.ENROLL, id=payment["enroll"]["id"])) == ["NOT_FOUND"]
    assert stranger.data(doc.ENROLLS)["enrolls"]["totalCount"] == 0
    # acting on it is NOT_FOUND too, never FORBIDDEN
    stranger.fails(doc.REFUND, "NOT_FOUND", input={"paymentId": payment["id"]})
    stranger.fails(doc.CONFIRM, "NOT_FOUND", paymentId=payment["id"])


def test_only_the_enrolls_client_can_pay_it(api: Api) -> None:
    client, provider, other = api.user("c2"), api.user("p2", "provider"), api.user("o2")
    enroll_id = book(client, provider)

    other.fails(doc.CREATE_INTENT, "NOT_FOUND", input={"enrollId": enroll_id})
    provider.fails(doc.CREATE_INTENT, "NOT_FOUND", input={"enrollId": enroll_id})
    assert other.data(doc.PAYMENTS)["payments"]["totalCount"] == 0


def test_the_payer_cannot_refund_an_enroll_payment_but_sees_it(api: Api) -> None:
    client, provider = api.user("c3"), api.user("p3", "provider")
    payment = paid_enroll(client, provider)

    refused = client.fails(doc.REFUND, "FORBIDDEN", input={"paymentId": payment["id"]})

    assert refused["refund"] is None
    assert client.data(doc.PAYMENT, id=payment["id"])["payment"]["status"] == "SUCCEEDED"


def test_an_admin_sees_every_payment_and_can_refund_an_enroll(api: Api) -> None:
    client, provider, admin = api.user("c4"), api.user("p4", "provider"), api.user("a4", "admin")
    payment = paid_enroll(client, provider)
    package = paid_package(api.user("c5"))

    listed = admin.data(doc.PAYMENTS)["payments"]
    assert {edge["node"]["id"] for edge in listed["edges"]} == {payment["id"], package["id"]}
    refunded = admin.ok(doc.REFUND, input={"paymentId": payment["id"], "amount": {"amount": "1.00", "currency": "USD"}})
    assert refunded["payment"]["status"] == "PARTIALLY_REFUNDED"


def test_only_an_admin_refunds_a_credit_package(api: Api) -> None:
    buyer = api.user("c6")
    package = paid_package(buyer)

    buyer.fails(doc.REFUND, "FORBIDDEN", input={"paymentId": package["id"]})
    api.user("p6", "provider").fails(doc.REFUND, "NOT_FOUND", input={"paymentId": package["id"]})


def test_booking_needs_a_recorded_user_with_the_provider_role(api: Api) -> None:
    client, not_provider = api.user("c7"), api.user("n7")
    not_provider.data("{ payments { totalCount } }")  # recorded, but without the provider role

    for provider_id in ("nobody-ever-seen", not_provider.id):
        client.fails(
            doc.CREATE_ENROLL, "NOT_FOUND", providerId=provider_id, title="Lesson", amount="10.00", currency="USD"
        )
    client.fails(doc.CREATE_ENROLL, "INVALID_INPUT", providerId=client.id, title="Me", amount="10.00", currency="USD")


def test_protected_fields_need_a_valid_token(api: Api) -> None:
    anonymous = api.anonymous()
    expired = api.graphql(
        "{ payments { totalCount } }", token=api.token("c8", ttl=60, issued=datetime.now(UTC) - timedelta(hours=1))
    )
    garbage = api.graphql("{ payments { totalCount } }", token="not.a.jwt")

    assert error_codes(anonymous.gql("{ payments { totalCount } }")) == ["UNAUTHENTICATED"]
    assert error_codes(expired) == ["UNAUTHENTICATED"]
    assert expired["errors"][0]["message"] == "token expired"
    assert error_codes(garbage) == ["UNAUTHENTICATED"]
    body = anonymous.gql(doc.CREATE_INTENT, input={"packageCode": "trial"})
    assert error_codes(body) == ["UNAUTHENTICATED"]
    # public fields still answer with a bad token
    assert api.graphql(doc.PACKAGES, token="not.a.jwt")["data"]["packages"]


def test_a_token_signed_with_another_secret_is_refused(api: Api) -> None:
    import jwt  # noqa: PLC0415

    forged = jwt.encode({"sub": "admin", "roles": ["admin"], "exp": 4102444800}, "x" * 40, algorithm="HS256")

    body = api.graphql("{ payments { totalCount } }", token=forged)

    assert error_codes(body) == ["UNAUTHENTICATED"]
    assert body["errors"][0]["message"] == "invalid token signature"


def test_intent_payload_for_a_foreign_package_payment_is_not_replayed_to_others(api: Api) -> None:
    buyer, other = api.user("c9"), api.user("o9")
    created = intent(buyer, packageCode="trial", idempotencyKey="same-key")

    mine = intent(other, packageCode="trial", idempotencyKey="same-key")

    assert mine["payment"]["id"] != created["payment"]["id"]
    assert mine["payment"]["payerId"] == other.id


def test_only_the_payer_confirms_with_a_payment_method(api: Api) -> None:
    client, provider = api.user("c1"), api.user("p1", "provider")
    enroll_id = book(client, provider)
    payment_id = intent(client, enrollId=enroll_id, provider="STRIPE")["payment"]["id"]

    refused = provider.fails(doc.CONFIRM, "FORBIDDEN", paymentId=payment_id, paymentMethod="4242424242424242")

    assert refused["payment"] is None
    assert client.data(doc.PAYMENT, id=payment_id)["payment"]["status"] == "PENDING"
    assert client.ok(doc.CONFIRM, paymentId=payment_id, paymentMethod="4242424242424242")["payment"]["status"] == (
        "AUTHORIZED"
    )


def test_an_admin_who_is_also_a_provider_cannot_review_their_own_payouts(api: Api) -> None:
    client, boss, other_admin = api.user("c1"), api.user("boss", "admin", "provider"), api.user("a2", "admin")
    payment = paid_enroll(client, boss)
    client.ok(doc.CONFIRM_ENROLL, id=_ready(boss, payment["enroll"]["id"]))
    account_id = boss.ok(doc.REGISTER_PAYOUT_ACCOUNT, input={"provider": "STRIPE", "externalAccountId": "acct_boss"})[
        "payoutAccount"
    ]["id"]

    boss.fails(doc.VERIFY_PAYOUT_ACCOUNT, "FORBIDDEN", id=account_id)
    other_admin.ok(doc.VERIFY_PAYOUT_ACCOUNT, id=account_id)
    amount = {"amount": "60.00", "currency": "USD"}
    withdrawal_id = boss.ok(doc.REQUEST_WITHDRAWAL, input={"amount": amount})["withdrawal"]["id"]
    boss.fails(doc.APPROVE_WITHDRAWAL, "FORBIDDEN", id=withdrawal_id)
    boss.fails(doc.REJECT_WITHDRAWAL, "FORBIDDEN", id=withdrawal_id)
    assert other_admin.ok(doc.APPROVE_WITHDRAWAL, id=withdrawal_id)["withdrawal"]["status"] == "APPROVED"


def _ready(provider: User, enroll_id: str) -> str:
    provider.ok(doc.ACCEPT_ENROLL, id=enroll_id)
    provider.ok(doc.MARK_ENROLL_READY, id=enroll_id)
    return enroll_id
