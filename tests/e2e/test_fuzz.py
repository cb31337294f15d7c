"""Property-based fuzzing of the HTTP surface (the hardening issue), with hypothesis-graphql.

Generated queries and mutations (valid ones, and ones with a single schema violation) are sent over HTTP as a
client, a provider, an admin, anonymously and with broken or hostile tokens, against a database that holds real
payments, enrolls, credits, a payout account and a withdrawal whose ids the generator mixes into its ID and String
values. Hostile raw bodies go to `/graphql` and to both webhook routes, unsigned and (against the provider fakes)
signed or from a trusted address. Whatever comes in: never a 5xx, always a JSON body, every error with a code the
contract names, nothing of a traceback, SQL or a provider SDK in the answer; and afterwards the ledger still
balances (the `db` fixture checks it at teardown).

Bounded for CI: a fixed seed (`derandomize`) and a few hundred examples in all. `FUZZ_SCALE=20` runs twenty times
as many examples from a random seed, for a longer hunt on a workstation.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import documents as doc
import httpx
import jwt
import pytest
from conftest import make_settings
from fakes.stripe_api import FakeStripe
from fakes.yookassa_api import FakeYooKassa
from flows import book, intent, paid_enroll, paid_package
from graphql import DocumentNode, FieldNode, OperationDefinitionNode, SelectionSetNode, build_schema, parse, print_ast
from hypothesis import HealthCheck, given, note
from hypothesis import settings as run_settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, from_schema, mutations, queries
from hypothesis_graphql import nodes as gql
from support import Api, User

from payql.app import create_app
from payql.db import Database
from payql.settings import Settings

SDL = (Path(__file__).resolve().parents[2] / "schema.graphql").read_text()

SCALE = float(os.environ.get("FUZZ_SCALE", "1"))


def budget(examples: int) -> Any:
    """The Hypothesis settings of one fuzz run: reproducible in CI, larger and random with FUZZ_SCALE."""
    return run_settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,
        derandomize=SCALE == 1,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
        print_blob=True,
    )


# What a client may see as `extensions.code` or `UserError.code`: the contract's ErrorCode set, and the codes of
# refusals before execution (graphql_view.py, schema/limits.py, schema/errors.py). Never INTERNAL_SERVER_ERROR:
# that is an unexpected exception, masked, which is exactly what the fuzzer hunts.
ERROR_CODES = frozenset(
    {
        "UNAUTHENTICATED",
        "FORBIDDEN",
        "NOT_FOUND",
        "INVALID_INPUT",
        "INVALID_STATE",
        "CONFLICT",
        "PAYMENT_DECLINED",
        "INSUFFICIENT_FUNDS",
        "PROVIDER_ERROR",
        "PROVIDER_UNAVAILABLE",
        "RATE_LIMITED",
    }
)
REFUSAL_CODES = frozenset(
    {
        "GRAPHQL_PARSE_FAILED",
        "GRAPHQL_VALIDATION_FAILED",
        "BAD_USER_INPUT",
        "QUERY_TOO_COSTLY",
        "BAD_REQUEST",
        "PAYLOAD_TOO_LARGE",
        "REQUEST_TIMEOUT",
        "UNSUPPORTED_MEDIA_TYPE",
        "BATCHING_NOT_SUPPORTED",
    }
)
GRAPHQL_STATUSES = frozenset({200, 400, 413, 415, 429})
WEBHOOK_STATUSES = frozenset({200, 400, 413, 429})

# Text that tells of the inside: a stack, SQL or a driver, a provider SDK's exception.
LEAKS = re.compile(
    r"Traceback \(most recent call last\)|File \"[^\"]*\", line \d|\[SQL: |\[parameters: "
    r"|sqlalchemy|psycopg|sqlite3|OperationalError|IntegrityError|ProgrammingError|DataError"
    r"|stripe\.(?:_?error|\w*Error)|StripeError|InvalidRequestError|CardError"
    r"|yookassa\.(?:domain|client|configuration)|ApiError|ResponseProcessingError"
    r"|Internal server error|Internal Server Error",
    re.IGNORECASE,
)
SQL = re.compile(r"\b(?:SELECT \S+ FROM|INSERT INTO|UPDATE \S+ SET|DELETE FROM)\b")  # SQL is written in capitals


def no_leak(text: str) -> None:
    found = LEAKS.search(text) or SQL.search(text)
    assert found is None, f"the answer tells of the inside ({found.group(0)!r}): {text[:500]}"


def check_graphql_answer(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in GRAPHQL_STATUSES, (response.status_code, response.text[:500])
    no_leak(response.text)
    assert response.headers["content-type"].startswith(("application/json", "application/graphql-response+json"))
    body = response.json()
    assert isinstance(body, dict), body
    assert set(body) <= {"data", "errors"}, body
    assert body, "an empty answer"
    for error in body.get("errors") or []:
        assert isinstance(error["message"], str), error
        code = error.get("extensions", {}).get("code")
        assert code in ERROR_CODES | REFUSAL_CODES, f"error without a contract code: {error}"
    if response.status_code != 200:
        assert body.get("errors"), body
    for code in user_error_codes(body.get("data")):
        assert code in ERROR_CODES, f"UserError code {code!r} is not in ErrorCode"
    return body


def user_error_codes(value: Any) -> Iterator[str]:
    """Every `UserError.code` in a payload, wherever the generated selection put it."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "errors" and isinstance(item, list):
                yield from (error["code"] for error in item if isinstance(error, dict) and "code" in error)
            else:
                yield from user_error_codes(item)
    elif isinstance(value, list):
        for item in value:
            yield from user_error_codes(item)


def check_webhook_answer(response: httpx.Response) -> None:
    assert response.status_code in WEBHOOK_STATUSES, (response.status_code, response.text[:500])
    no_leak(response.text)
    assert isinstance(response.json(), dict)


# -- the world the fuzzer plays in ---------------------------------------------------------------------------------


Headers = dict[str, str | bytes]  # header values as bytes: any latin-1 text, as a real client may send


@dataclass
class World:
    """The callers and the real objects the generated operations may name."""

    api: Api
    client: User
    provider: User
    admin: User
    ids: list[str] = field(default_factory=list)
    cursors: list[str] = field(default_factory=list)

    def callers(self) -> st.SearchStrategy[tuple[str, Headers]]:
        """Who sends an operation, as (name, headers): the seeded users, someone new, nobody, broken tokens, and
        tokens signed with the right secret whose claims are anything at all."""
        secret = self.api.settings.jwt_secret.get_secret_value()
        an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
        tokens = {
            "client": self.client.token,
            "provider": self.provider.token,
            "admin": self.admin.token,
            "stranger": self.api.token("fuzz-stranger"),
            "expired": self.api.token("fuzz-client", ttl=60, issued=an_hour_ago),
            "forged": jwt.encode(_claims("fuzz-admin", ["admin"]), "not-the-secret-" * 3, algorithm="HS256"),
            "unsigned": jwt.encode(_claims("fuzz-admin", ["admin"]), None, algorithm="none"),
        }
        named = st.sampled_from(
            ["client", "client", "provider", "provider", "admin", "admin", "stranger", "expired", "forged", "unsigned"]
        ).map(lambda name: (name, {"Authorization": f"Bearer {tokens[name]}"}))
        text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=80)
        odd_headers = st.one_of(
            st.just({}),
            text.map(lambda value: {"Authorization": value.encode("latin-1")}),
            text.map(lambda value: {"Authorization": f"Bearer {value}".encode("latin-1")}),
        ).map(lambda headers: ("odd", headers))
        claims = st.fixed_dictionaries(
            {"sub": st.one_of(st.sampled_from(self.ids), st.text(max_size=40), JSON_VALUES)},
            optional={
                "exp": st.one_of(st.just(int(time.time()) + 3600), JSON_VALUES),
                "roles": st.one_of(st.lists(st.sampled_from(["admin", "provider", "", "ADMIN"])), JSON_VALUES),
                "role": st.one_of(st.sampled_from(["admin", "provider"]), JSON_VALUES),
                "iss": JSON_VALUES,
                "aud": JSON_VALUES,
                "nbf": JSON_VALUES,
                "iat": JSON_VALUES,
            },
        )
        hostile = claims.map(lambda c: ("claims", {"Authorization": f"Bearer {hs256(c, secret)}"}))
        return st.one_of(named, named, named, named, odd_headers, hostile)


def hs256(claims: Any, secret: str) -> str:
    """A JWT signed with `secret` whatever its claims (PyJWT refuses to encode some of the hostile ones)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def _claims(sub: str, roles: list[str]) -> dict[str, Any]:
    return {"sub": sub, "roles": roles, "exp": int(time.time()) + 3600}


def seed(api: Api) -> World:
    """Real objects in every state the fuzzer can push further: paid, held, pending, refundable, credits to spend,
    earnings, a verified payout account and a pending withdrawal."""
    client, provider, admin = (
        api.user("fuzz-client"),
        api.user("fuzz-provider", "provider"),
        api.user("fuzz-admin", "admin"),
    )
    admin.data("{ payments { totalCount } }")
    pending_enroll = book(client, provider, "40.00")
    paid_enroll(client, provider, amount="120.00")
    paid_enroll(client, provider, amount="80.00", capture="MANUAL")
    paid_enroll(client, provider, amount="1500.00", currency="RUB", provider_name="YOOKASSA")
    paid_package(client, "trial")
    intent(client, packageCode="standard")  # left pending
    # A completed enroll: the provider has earnings to withdraw.
    completed = paid_enroll(client, provider, amount="200.00", capture="MANUAL")["enroll"]["id"]
    provider.ok(doc.ACCEPT_ENROLL, id=completed)
    provider.ok(doc.MARK_ENROLL_READY, id=completed)
    client.ok(doc.CONFIRM_ENROLL, id=completed)
    account = provider.ok(doc.REGISTER_PAYOUT_ACCOUNT, input={"provider": "STRIPE", "externalAccountId": "acct_fuzz"})
    admin.ok(doc.VERIFY_PAYOUT_ACCOUNT, id=account["payoutAccount"]["id"])
    provider.ok(doc.REQUEST_WITHDRAWAL, input={"amount": {"amount": "60.00", "currency": "USD"}})

    everything = admin.data(
        """{
          payments(first: 100) { pageInfo { endCursor } edges { cursor node { id enroll { id } refunds { id } } } }
          enrolls(first: 100) { edges { cursor node { id } } }
          withdrawals(first: 100) { edges { cursor node { id } } }
          payoutAccounts { id }
        }"""
    )
    ids = [pending_enroll, account["payoutAccount"]["id"], client.id, provider.id, admin.id]
    cursors: list[str] = []
    for connection in ("payments", "enrolls", "withdrawals"):
        for edge in everything[connection]["edges"]:
            ids.append(edge["node"]["id"])
            cursors.append(edge["cursor"])
            ids.extend(refund["id"] for refund in edge["node"].get("refunds", []))
    lots = client.data(doc.CREDIT_BALANCE)["balances"]["creditLots"]
    ids.extend(lot["id"] for lot in lots)
    return World(api, client, provider, admin, ids=sorted(set(ids)), cursors=cursors)


# Values the service gives a meaning to, and values that have hurt services before.
WORDS = [
    *("trial", "standard", "value", "premium"),
    *("USD", "RUB", "JPY", "KWD", "EUR", "usd", "XYZ"),
    *("0", "0.01", "1.00", "40.00", "50.00", "60.00", "100.00", "1500", "1.234", "-1.00", "1e3", "NaN", "Infinity"),
    *("https://spa.example/back", "javascript:alert(1)", "acct_fuzz", "wallet:4100116075156746"),
    *("pm_card_visa", "pm_card_chargeDeclined", "4242424242424242", "4000000000000002"),
]
HOSTILE_STRINGS = [
    "",
    " ",
    "99999999999999999999999999.99",
    "' OR '1'='1",
    "1; DROP TABLE payments",
    "%",
    "_",
    "\\",
    "\x00",
    "a\x00b",
    "\ud7ff\ufffd",
    "😀" * 50,
    "x" * 5000,
    "9" * 400,
]


def scalars(world: World) -> dict[str, st.SearchStrategy[Any]]:
    """Custom scalar strategies: mostly the seeded ids, codes, currencies and amounts, so that generated operations
    reach the objects and the checks behind the first `NOT_FOUND`; some hostile strings; some anything."""
    text = st.text(max_size=60)
    ids, cursors = st.sampled_from(world.ids), st.sampled_from(world.cursors)
    words, hostile = st.sampled_from(WORDS), st.sampled_from(HOSTILE_STRINGS)
    return {
        "ID": st.one_of(ids, ids, ids, words, hostile, text).map(gql.String),
        "String": st.one_of(words, words, ids, cursors, hostile, text).map(gql.String),
        "Int": st.one_of(
            st.integers(min_value=-2, max_value=120), st.integers(min_value=-(2**31), max_value=2**31 - 1)
        ).map(gql.Int),
        "DateTime": st.one_of(st.datetimes().map(lambda d: d.isoformat()), text).map(gql.String),
    }


@pytest.fixture
def settings(database_url: str) -> Settings:
    """The suite's settings without the per-caller rate limit in the way (its own test is in test_http.py)."""
    return make_settings(database_url, rate_limit="1000000/minute")


@pytest.fixture
def world(api: Api) -> World:
    return seed(api)


USER_ERRORS = parse("{ errors { code field message } }").definitions[0].selection_set.selections[0]


def with_user_errors(document: DocumentNode) -> str:
    """The generated mutation, each payload also asking for `errors { code field message }`: every answer then
    says what happened (the generator selects a random subset of the payload's fields)."""
    definitions = []
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            fields = tuple(
                dataclasses.replace(
                    field, selection_set=SelectionSetNode(selections=(*field.selection_set.selections, USER_ERRORS))
                )
                if isinstance(field, FieldNode) and field.selection_set is not None
                else field
                for field in definition.selection_set.selections
            )
            definition = dataclasses.replace(definition, selection_set=SelectionSetNode(selections=fields))  # noqa: PLW2901
        definitions.append(definition)
    return print_ast(DocumentNode(definitions=tuple(definitions)))


def post_graphql(world: World, document: str, headers: Headers) -> dict[str, Any]:
    return check_graphql_answer(world.api.request("POST", "/graphql", json={"query": document}, headers=headers))


def outcomes(body: dict[str, Any]) -> Iterator[str]:
    """What each root field of a mutation answer did: "createEnroll ok", "refund NOT_FOUND"..."""
    for name, payload in (body.get("data") or {}).items():
        if isinstance(payload, dict):
            yield " ".join(
                [name, *[error["code"] for error in payload["errors"]]] if payload["errors"] else [name, "ok"]
            )


def codes_of(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors") or []]


# -- generated operations -------------------------------------------------------------------------------------------


def test_generated_queries_answer_with_codes_and_nothing_inside(world: World) -> None:
    strategy = queries(SDL, custom_scalars=scalars(world))

    # the caller first: a large document may exhaust the example's data, and what is drawn after it is then minimal
    @budget(200)
    @given(caller=world.callers(), document=strategy)
    def run(caller: tuple[str, Headers], document: str) -> None:
        name, headers = caller
        note(document)
        body = post_graphql(world, document, headers)
        if name in {"client", "provider", "admin", "stranger"}:  # a valid token is never refused as unauthenticated
            assert "UNAUTHENTICATED" not in codes_of(body), body

    run()


MUTATION_FIELDS = sorted(build_schema(SDL).mutation_type.fields)  # type: ignore[union-attr]


def test_generated_mutations_answer_with_codes_and_keep_the_books(world: World) -> None:
    seen: set[str] = set()

    # Every mutation of the schema gets its own examples: how many examples reach past the first refusal then
    # depends on each mutation, not on where a schema change moves the one derandomized draw over all of them.
    for name in MUTATION_FIELDS:
        strategy = mutations(SDL, fields=[name], custom_scalars=scalars(world), print_ast=with_user_errors)

        @budget(20)
        @given(caller=world.callers(), document=strategy)
        def run(caller: tuple[str, Headers], document: str) -> None:
            note(document)
            seen.update(outcomes(post_graphql(world, document, caller[1])))

        run()
    # Every mutation answered, some did something, others were refused in several ways. The books still balance:
    # the ledger check runs at teardown, and every balance reads.
    assert {outcome.split()[0] for outcome in seen} >= set(MUTATION_FIELDS), sorted(seen)
    assert any(outcome.endswith(" ok") for outcome in seen), sorted(seen)
    assert len({outcome.split()[-1] for outcome in seen}) >= 4, sorted(seen)
    assert world.admin.data(doc.PLATFORM_BALANCES)["platformBalances"]


def test_operations_with_one_schema_violation_are_refused_with_a_code(world: World) -> None:
    strategy = from_schema(SDL, custom_scalars=scalars(world), mode=Mode.NEGATIVE)

    @budget(120)
    @given(caller=world.callers(), document=strategy)
    def run(caller: tuple[str, Headers], document: str) -> None:
        note(document)
        body = post_graphql(world, document, caller[1])
        assert body.get("errors"), body

    run()


# -- hostile bodies -------------------------------------------------------------------------------------------------


def json_bytes(value: Any) -> bytes:
    return json.dumps(value).encode()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)


def nested(depth: int, kind: str) -> bytes:
    if kind == "list":
        return b"[" * depth + b"]" * depth
    if kind == "object":
        return b'{"a":' * depth + b"1" + b"}" * depth
    if kind == "variables":
        inner = b"[" * depth + b"]" * depth
        return b'{"query": "query($v: [String]) { packages { code } }", "variables": {"v": ' + inner + b"}}"
    return b'{"query": "' + b"{ payments { edges { node { enroll " * (depth // 40 + 1) + b'"}'


HOSTILE_BODIES = st.one_of(
    st.binary(max_size=300),
    JSON_VALUES.map(json_bytes),
    st.fixed_dictionaries(
        {},
        optional={
            "query": st.one_of(
                st.text(max_size=200), JSON_VALUES, st.sampled_from(["{ packages { code } }", "{", "}"])
            ),
            "variables": JSON_VALUES,
            "operationName": JSON_VALUES,
            "extensions": JSON_VALUES,
        },
    ).map(json_bytes),
    st.builds(
        nested,
        st.sampled_from([10, 900, 1100, 5000, 30_000, 49_000]),
        st.sampled_from(["list", "object", "variables", "query"]),
    ),
    st.builds(
        lambda n, c: c * n,
        st.sampled_from([1, 1000, 99_999, 100_001, 1_000_001]),
        st.sampled_from([b"a", b"{", b"\x00", b" "]),
    ),
)
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json",
        "application/graphql-response+json",
        "application/json; charset=latin-1",
        "text/plain",
        "",
    ]
)


def test_hostile_bodies_at_graphql_get_a_coded_4xx_at_worst(world: World) -> None:
    # generated documents too, with variables and an operation name of any JSON type
    requests = st.fixed_dictionaries(
        {"query": from_schema(SDL, custom_scalars=scalars(world))},
        optional={"variables": JSON_VALUES, "operationName": st.one_of(st.text(max_size=10), JSON_VALUES)},
    ).map(json_bytes)

    @budget(200)
    @given(caller=world.callers(), body=st.one_of(HOSTILE_BODIES, requests), content_type=CONTENT_TYPES)
    def run(caller: tuple[str, Headers], body: bytes, content_type: str) -> None:
        headers = {**caller[1], "Content-Type": content_type}
        check_graphql_answer(world.api.request("POST", "/graphql", content=body, headers=headers))

    run()


def test_hostile_bodies_at_the_webhooks_in_mock_mode_are_refused(api: Api) -> None:
    @budget(60)
    @given(body=HOSTILE_BODIES, route=st.sampled_from(["/webhooks/stripe", "/webhooks/yookassa"]))
    def run(body: bytes, route: str) -> None:
        check_webhook_answer(api.request("POST", route, content=body))

    run()


# -- webhooks that pass verification -------------------------------------------------------------------------------

STRIPE_KEY, STRIPE_WEBHOOK_SECRET = "sk_test_fuzz", "whsec_fuzz_secret"
YOOKASSA_SHOP, YOOKASSA_SECRET = "424242", "fuzz_secret_key"


@pytest.fixture
def providers_api(database_url: str, db: Database) -> Iterator[tuple[Api, FakeStripe, FakeYooKassa]]:
    with FakeStripe(secret_key=STRIPE_KEY) as stripe_fake, FakeYooKassa(YOOKASSA_SHOP, YOOKASSA_SECRET) as yookassa:
        configured = make_settings(
            database_url,
            rate_limit="1000000/minute",
            stripe_secret_key=STRIPE_KEY,
            stripe_webhook_secret=STRIPE_WEBHOOK_SECRET,
            stripe_api_base=stripe_fake.url,
            yookassa_shop_id=YOOKASSA_SHOP,
            yookassa_secret_key=YOOKASSA_SECRET,
            yookassa_api_url=f"{yookassa.url}/v3",
            yookassa_trusted_ips=["127.0.0.1"],  # the test client's address
            provider_timeout_ms=1500,
        )
        with Api(create_app(configured, db=db), configured) as api:
            yield api, stripe_fake, yookassa


def stripe_signature(body: bytes) -> str:
    timestamp = int(time.time())
    digest = hmac.new(STRIPE_WEBHOOK_SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def events(refs: list[str], types: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Provider events: mostly shaped as the provider sends them (with real ids and hostile values mixed in), some
    loose, with any key missing or of any type."""
    value = st.one_of(st.sampled_from(refs), JSON_VALUES)
    ref = st.one_of(st.sampled_from(refs), st.sampled_from(refs), value)
    kinds = st.sampled_from(["payment_intent", "charge", "refund", "checkout.session", "payment", "payout", "transfer"])
    statuses = st.sampled_from(["succeeded", "canceled", "waiting_for_capture", "requires_capture", "pending"])
    amount = st.one_of(
        st.integers(min_value=-1, max_value=10**12),
        st.fixed_dictionaries({"value": st.sampled_from(["100.00", "0.01", "-1", "1e9", "x"]), "currency": value}),
        value,
    )
    optional = {
        "status": st.one_of(statuses, value),
        "metadata": st.one_of(st.fixed_dictionaries({"payment_id": ref}), value),
        "payment_intent": ref,
        "payment_id": ref,
        "client_reference_id": ref,
        "amount": amount,
        "amount_received": amount,
        "amount_refunded": amount,
        "amount_capturable": amount,
        "currency": st.one_of(st.sampled_from(["usd", "rub", "USD"]), value),
        "paid": value,
        "refunds": value,
    }
    obj = st.fixed_dictionaries({"id": ref, "object": st.one_of(kinds, value)}, optional=optional)
    shaped = st.fixed_dictionaries(
        {
            "id": st.text(min_size=1, max_size=12).map(lambda s: f"evt_{s}"),
            "object": st.just("event"),
            "type": st.sampled_from(types),
            "event": st.sampled_from(types),
            "data": st.fixed_dictionaries({"object": obj}),
            "object_": obj,
        }
    ).map(_placed)
    loose = st.fixed_dictionaries(
        {},
        optional={
            "id": value,
            "object": st.one_of(st.just("event"), obj, value),
            "type": st.one_of(st.sampled_from(types), value),
            "event": st.one_of(st.sampled_from(types), value),
            "data": st.one_of(st.fixed_dictionaries({"object": st.one_of(obj, value)}), value),
        },
    )
    return st.one_of(shaped, shaped, shaped, loose)


def _placed(event: dict[str, Any]) -> dict[str, Any]:
    """Stripe puts the object in `data.object`, YooKassa in `object`."""
    obj = event.pop("object_")
    if event["type"] in YOOKASSA_TYPES:
        event["object"] = obj
    return event


STRIPE_TYPES = [
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "payment_intent.processing",
    "payment_intent.requires_action",
    "payment_intent.amount_capturable_updated",
    "charge.refunded",
    "charge.dispute.created",
    "checkout.session.completed",
    "refund.updated",
    "refund.failed",
    "charge.refund.updated",
]
YOOKASSA_TYPES = [
    "payment.waiting_for_capture",
    "payment.succeeded",
    "payment.canceled",
    "refund.succeeded",
    "payout.succeeded",
    "payout.canceled",
]


def test_verified_but_hostile_webhooks_never_break_the_service(
    providers_api: tuple[Api, FakeStripe, FakeYooKassa], db: Database
) -> None:
    api, stripe_fake, yookassa = providers_api
    client, provider = api.user("fuzz-client"), api.user("fuzz-provider", "provider")
    enroll_stripe = book(client, provider, "100.00", "USD")
    stripe_payment = intent(client, enrollId=enroll_stripe, provider="STRIPE", captureMethod="AUTOMATIC")["payment"]
    enroll_yookassa = book(client, provider, "100.00", "RUB")
    yookassa_payment = intent(
        client, enrollId=enroll_yookassa, provider="YOOKASSA", returnUrl="https://spa.example/back"
    )["payment"]
    refs = [stripe_payment["id"], yookassa_payment["id"], *stripe_fake.payment_intents, *yookassa.payments]

    @budget(100)
    @given(
        stripe=st.one_of(*[events(refs, STRIPE_TYPES).map(json_bytes)] * 3, HOSTILE_BODIES),
        notification=st.one_of(
            *[events(refs, YOOKASSA_TYPES).map(lambda e: json_bytes({**e, "type": "notification"}))] * 3,
            HOSTILE_BODIES,
        ),
    )
    def run(stripe: bytes, notification: bytes) -> None:
        signed = {"Stripe-Signature": stripe_signature(stripe), "Content-Type": "application/json"}
        check_webhook_answer(api.request("POST", "/webhooks/stripe", content=stripe, headers=signed))
        check_webhook_answer(
            api.request(
                "POST", "/webhooks/yookassa", content=notification, headers={"Content-Type": "application/json"}
            )
        )

    run()


# -- what the fuzzer found (regressions) --------------------------------------------------------------------------


def test_a_body_nested_deeper_than_json_reads_is_a_bad_request(api: Api) -> None:
    deep = b"[" * 50_000 + b"]" * 50_000  # within GRAPHQL_MAX_BYTES; json.loads raised RecursionError: a 500
    posted = api.request("POST", "/graphql", content=deep, headers={"Content-Type": "application/json"})
    got = api.request("GET", "/graphql", params={"query": "{ packages { code } }", "variables": "[" * 5_000})

    for response in (posted, got):
        assert response.status_code == 400
        assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


@pytest.mark.parametrize("query", ["{ packages { code }", "!", "{ packages {} }", "{ payments { edges {} } }"])
def test_syntax_errors_and_empty_selections_carry_a_code(api: Api, query: str) -> None:
    # A syntax error skipped the error extensions (no code); an empty selection set, which graphql-core 3.3 parses,
    # broke Strawberry's depth limiter and came back as its raw `max()` message.
    legacy = api.graphql(query, token=api.token("u1"))
    strict = api.request(
        "POST", "/graphql", json={"query": query}, headers={"Accept": "application/graphql-response+json"}
    )

    assert [error["extensions"]["code"] for error in legacy["errors"]] == ["GRAPHQL_PARSE_FAILED"]
    assert "data" not in legacy
    assert strict.status_code == 400
    assert strict.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"


@pytest.mark.parametrize(
    ("query", "operation_name"),
    [
        ("query A { packages { code } }", "B"),
        ("query A { packages { code } } query B { packages { name } }", "C"),
        ("fragment F on Query { packages { code } }", None),
    ],
)
def test_an_operation_that_cannot_be_chosen_is_a_bad_request(api: Api, query: str, operation_name: str | None) -> None:
    response = api.request("POST", "/graphql", json={"query": query, "operationName": operation_name})

    assert response.status_code == 400  # was an unhandled CannotGetOperationTypeError: a 500
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


def test_an_exception_in_an_extension_hook_is_masked(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> int:
        raise RuntimeError('SELECT secret FROM payments WHERE id = 1 -- File "x.py", line 1')

    monkeypatch.setattr("payql.schema.limits.query_cost", broken)
    response = api.request("POST", "/graphql", json={"query": "{ packages { code } }"}, headers={"X-Request-ID": "r-1"})

    # Strawberry returns what an extension hook raises as `str(exc)`, past the error extensions
    assert response.json()["errors"] == [
        {"message": "Internal server error", "extensions": {"code": "INTERNAL_SERVER_ERROR", "requestId": "r-1"}}
    ]
    no_leak(response.text.replace("Internal server error", ""))


def test_verified_webhooks_not_shaped_like_events_are_refused_not_failed(
    providers_api: tuple[Api, FakeStripe, FakeYooKassa],
) -> None:
    api = providers_api[0]
    stripe_bodies = [
        b"{}",
        b'{"id": "evt_1", "type": "payment_intent.succeeded", "data": []}',
        b"[" * 5000 + b"]" * 5000,
    ]
    notifications = [
        b'{"type": "notification", "event": "payment.succeeded", "object": {"id": "p1", "metadata": [1]}}',
        b"[" * 5000 + b"]" * 5000,
    ]

    # ids the log or a lookup cannot take: each failed the delivery (a 500 on PostgreSQL, at every retry)
    unusable = [{"id": "p" * 300}, {"id": "p\x00"}, {"id": "p2", "metadata": {"payment_id": "pay\x00"}}]
    notifications += [
        json_bytes({"type": "notification", "event": "payment.succeeded", "object": obj}) for obj in unusable
    ]

    answers = [
        api.request("POST", "/webhooks/stripe", content=body, headers={"Stripe-Signature": stripe_signature(body)})
        for body in stripe_bodies
    ] + [api.request("POST", "/webhooks/yookassa", content=body) for body in notifications]

    assert [answer.status_code for answer in answers] == [400] * 8
    assert {answer.json()["error"] for answer in answers} == {"malformed event"}


def test_text_with_a_nul_character_is_invalid_input(api: Api, db: Database) -> None:
    client, provider = api.user("c1"), api.user("p1", "provider")
    enroll_id = book(client, provider)
    literal = client.gql('{ enroll(id: "enr\\u0000") { id } packages { code } }')
    variable = client.gql(doc.ENROLL, id=enroll_id + "\x00")
    nested = client.gql(doc.CREATE_ENROLL, providerId=provider.id, title="Lesson\x00", amount="10.00", currency="USD")

    # PostgreSQL refused the NUL in the query: an internal error; SQLite stored the title with it
    for body in (literal, variable, nested):
        assert [error["extensions"]["code"] for error in body["errors"]] == ["INVALID_INPUT"], body
        assert "data" not in body
    assert client.data("{ enrolls { totalCount } }")["enrolls"]["totalCount"] == 1


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "user\x00"},
        {"sub": "u1", "roles": ["admin\x00"]},
        {"sub": "u1", "roles": ["a,b"]},
        {"sub": "u1", "roles": ["r" * 300]},
    ],
)
def test_tokens_whose_subject_or_roles_cannot_be_recorded_are_unauthenticated(api: Api, claims: dict[str, Any]) -> None:
    token = hs256({**claims, "exp": int(time.time()) + 60}, api.settings.jwt_secret.get_secret_value())

    body = api.graphql("{ payments { totalCount } }", token=token)

    # signed, so accepted by the token check, and then failed to be recorded as a user (a 500 on PostgreSQL)
    assert [error["extensions"]["code"] for error in body["errors"]] == ["UNAUTHENTICATED"]
