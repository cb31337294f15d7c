"""Rate limits in Redis (`REDIS_URL`), and what happens when Redis does not answer: requests are still served,
limits are counted in process (logged once, shown by `/readyz` as degraded), never a 500."""

from __future__ import annotations

import logging
import uuid

import pytest
from support import Api

from payql.app import create_app
from payql.db import Database
from payql.settings import Settings

# Nothing listens on port 1: every connection is refused. A process keeps one Redis state per URL, so each test
# names its own (client_name) to see an outage begin.
DEAD_REDIS = "redis://127.0.0.1:1/0?client_name={}"
LIVE_REDIS = "redis://127.0.0.1:6379/0"  # the machine's Redis (.ci/run starts it when it is not running)


def test_with_redis_unreachable_requests_are_served_and_limited_in_process(
    settings: Settings, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    # given a service whose Redis refuses every connection
    dead = settings.model_copy(update={"redis_url": DEAD_REDIS.format(uuid.uuid4().hex), "rate_limit": "3/minute"})
    with caplog.at_level(logging.INFO), Api(create_app(dead, db=db), dead) as api:
        token = api.token(f"redis-down-{uuid.uuid4().hex}")

        # when a caller sends four queries, a bad webhook arrives, and the orchestrator asks for readiness
        answers = [
            api.request(
                "POST",
                "/graphql",
                json={"query": "{ packages { code } }"},
                headers={"Authorization": f"Bearer {token}"},
            )
            for _ in range(4)
        ]
        webhook = api.request("POST", "/webhooks/yookassa", content=b"{}")
        ready = api.request("GET", "/readyz")

    # then the queries are answered and still limited (in process), the webhook is refused as a bad delivery
    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    assert answers[0].json()["data"]["packages"]
    assert answers[3].json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert webhook.status_code == 400
    # and readiness says degraded, not unavailable: every request is still served
    assert (ready.status_code, ready.json()) == (
        200,
        {"status": "degraded", "reason": "redis", "rateLimits": "in-process"},
    )
    warnings = [r for r in caplog.records if r.name == "payql.ratelimit" and r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "counted in this process" in warnings[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_with_redis_answering_replicas_share_the_counts_and_readiness_is_ready(
    settings: Settings, db: Database
) -> None:
    # given two replicas sharing the machine's Redis
    shared = settings.model_copy(update={"redis_url": LIVE_REDIS, "rate_limit": "3/minute"})
    user = f"redis-shared-{uuid.uuid4().hex}"
    with Api(create_app(shared, db=db), shared) as one, Api(create_app(shared, db=db), shared) as two:
        token = one.token(user)
        headers = {"Authorization": f"Bearer {token}"}
        query = {"query": "{ packages { code } }"}

        # when one caller spreads four queries over both
        answers = [
            api.request("POST", "/graphql", json=query, headers=headers).status_code for api in (one, two, one, two)
        ]
        ready = one.request("GET", "/readyz")

    # then the fourth is refused wherever it lands, and readiness is plain ready
    assert answers == [200, 200, 200, 429]
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
