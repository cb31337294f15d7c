"""Log lines name their request: `LOG_FORMAT=json` makes each one JSON object with the request's id, user, GraphQL
operation and outcome; text lines carry the request id (issue #15 part 7 B)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from conftest import TEST_SECRET, stripe_api, stripe_deliver, stripe_fake
from fakes.stripe_api import FakeStripe
from flows import book
from servers import Server, payql
from support import Api

from payql.logs import ContextFilter, make_formatter
from payql.migrate import upgrade

fake, api_stripe = stripe_fake, stripe_api
KEYS = {"time", "level", "logger", "message", "request_id", "user", "operation", "outcome"}
BUY = "mutation Buy($input: CreateIntentInput!) { createIntent(input: $input) { payment { id } errors { code } } }"


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextmanager
def captured(fmt: str) -> Iterator[list[str]]:
    """Every line logged meanwhile (payql's from DEBUG up), formatted as `LOG_FORMAT=fmt` formats it."""
    handler = _Lines()
    handler.setFormatter(make_formatter(fmt))
    handler.addFilter(ContextFilter())
    root, ours = logging.getLogger(), logging.getLogger("payql")
    level = ours.level
    root.addHandler(handler)
    ours.setLevel(logging.DEBUG)
    try:
        yield handler.lines
    finally:
        root.removeHandler(handler)
        ours.setLevel(level)


def post(api: Api, query: str, variables: dict[str, Any], *, token: str, request_id: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", "X-Request-ID": request_id}
    return api.request("POST", "/graphql", json={"query": query, "variables": variables}, headers=headers)


def test_every_line_of_a_graphql_request_is_json_with_its_request_user_and_operation(api: Api) -> None:
    token = api.token("alice")

    # when alice buys a package in mock mode (the mock provider logs what it simulates), sending her request id
    with captured("json") as lines:
        answer = post(api, BUY, {"input": {"packageCode": "trial"}}, token=token, request_id="req-1234.abc_Z")

    # then the answer echoes the id, and every line is one JSON object naming the request, alice and the operation
    assert answer.status_code == 200
    assert answer.json()["data"]["createIntent"]["errors"] == []
    assert answer.headers["X-Request-ID"] == "req-1234.abc_Z"
    # (the test's own HTTP client logs its request as well, after the answer: only payql's lines are the request's)
    parsed = [line for line in map(json.loads, lines) if line["logger"].startswith("payql")]
    assert any("MOCK MODE" in line["message"] for line in parsed), lines
    for line in parsed:
        assert set(line) >= KEYS, line
        assert line["request_id"] == "req-1234.abc_Z"
        assert line["user"] == "alice"
        assert line["operation"] == "Buy"
        assert line["outcome"] is None  # decided when the operation ends
        assert token not in json.dumps(line)
        assert TEST_SECRET not in json.dumps(line)


def test_a_request_id_that_is_not_sane_is_replaced_and_the_replacement_is_logged(api: Api) -> None:
    token = api.token("bob")

    with captured("json") as lines:
        answer = post(api, BUY, {"input": {"packageCode": "trial"}}, token=token, request_id="<script>" + "x" * 80)

    chosen = answer.headers["X-Request-ID"]
    assert "<" not in chosen
    assert 0 < len(chosen) <= 64
    assert lines
    assert {json.loads(line)["request_id"] for line in lines} == {chosen}  # the test client's line too: same task


def test_text_lines_carry_the_request_id(api: Api) -> None:
    with captured("text") as lines:
        post(api, BUY, {"input": {"packageCode": "trial"}}, token=api.token("carol"), request_id="text-req-1")

    assert lines
    assert all("[request text-req-1]" in line for line in lines), lines


def test_every_line_of_a_stripe_webhook_names_the_provider_event_and_outcome(api_stripe: Api, fake: FakeStripe) -> None:
    # given a Stripe payment the client has paid
    api = api_stripe
    client, mentor = api.user("client"), api.user("mentor", "provider")
    client.ok(
        BUY.replace("mutation Buy", "mutation Pay"),
        input={"enrollId": book(client, mentor), "provider": "STRIPE", "captureMethod": "AUTOMATIC"},
    )
    (intent_id,) = fake.payment_intents
    fake.customer_pays(intent_id, "pm_card_visa")
    event = fake.events_of("payment_intent.succeeded")[-1]

    # when Stripe delivers the event
    with captured("json") as lines:
        logging.getLogger("payql.test").info("before the delivery")
        assert stripe_deliver(api, fake, event) == "processed"

    # then every line of the delivery names it; the line outside it names no request
    outside, *inside = [line for line in map(json.loads, lines) if line["logger"].startswith("payql")]
    assert outside["request_id"] is None
    assert "provider" not in outside
    assert inside, lines
    for line in inside:
        assert set(line) >= KEYS | {"provider", "event_id", "event_type"}, line
        assert line["request_id"]
        assert line["user"] is None
        assert line["provider"] == "STRIPE"
        assert line["event_id"] == event["id"]
        assert line["event_type"] == "payment_intent.succeeded"
        assert "whsec_" not in json.dumps(line)


def test_a_served_request_logs_json_lines_and_its_access_line_has_the_outcome(tmp_path: Path) -> None:
    # given `payql serve` with LOG_FORMAT=json
    url = f"sqlite:///{tmp_path / 'payql.db'}"
    upgrade(url)
    env = {"DATABASE_URL": url, "JWT_SECRET": TEST_SECRET, "PAYQL_ENV": "test", "LOG_FORMAT": "json"}
    with Server(env, tmp_path) as server:
        from payql.auth import issue_token  # noqa: PLC0415
        from payql.settings import Settings  # noqa: PLC0415

        token = issue_token(Settings(_env_file=None, jwt_secret=TEST_SECRET), "dora")  # type: ignore[call-arg]
        headers = {"Authorization": f"Bearer {token}", "X-Request-ID": "served-1"}
        # when dora asks for a package that does not exist
        missing = {"query": BUY, "variables": {"input": {"packageCode": "nope"}}}
        answer = httpx.post(f"{server.url}/graphql", json=missing, headers=headers, timeout=10)
        assert answer.json()["data"]["createIntent"]["errors"][0]["code"] == "NOT_FOUND"
        ok = {"query": BUY, "variables": {"input": {"packageCode": "trial"}}}
        httpx.post(f"{server.url}/graphql", json=ok, headers={**headers, "X-Request-ID": "served-2"}, timeout=10)
    log = server.log_path.read_text()

    # then every line of the server is a JSON object, uvicorn's included
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert all(set(line) >= KEYS for line in lines), log
    access = {line["request_id"]: line for line in lines if line["logger"] == "uvicorn.access"}
    assert access["served-1"]["outcome"] == "NOT_FOUND"
    assert access["served-1"]["user"] == "dora"
    assert access["served-1"]["operation"] == "Buy"
    assert access["served-2"]["outcome"] == "ok"
    assert token not in log


def test_a_commands_lines_in_json_carry_the_command(tmp_path: Path) -> None:
    # given a migrated database and LOG_FORMAT=json
    url = f"sqlite:///{tmp_path / 'payql.db'}"
    upgrade(url)
    env = {"DATABASE_URL": url, "JWT_SECRET": TEST_SECRET, "LOG_FORMAT": "json"}

    # when `payql holds expire` runs (in mock mode: it warns that both providers are simulated)
    result = payql("holds", "expire", env=env, cwd=tmp_path)

    # then its summary is on stdout and every line on stderr is a JSON object naming the command
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("holds expire: ")
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert any("MOCK MODE" in line["message"] for line in lines), result.stderr
    assert all(set(line) >= KEYS and line["command"] == "holds expire" for line in lines), result.stderr
