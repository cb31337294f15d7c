"""A real server under 1,000 abusive requests stays responsive: every one is refused with a coded error (never a
5xx), and an honest caller's query keeps being answered, quickly, while the flood goes on."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from conftest import TEST_SECRET, make_settings
from servers import Server

from payql.auth import issue_token

ABUSERS = 16
REQUESTS = 1000
HONEST_DEADLINE = 2.0  # seconds for one honest query while the flood runs: generous, it is not a benchmark


def hostile_bodies() -> list[tuple[str, bytes, str]]:
    """(name, body, content type): each refused by a different rule."""
    deep = "{ payments { edges { node { enroll { payment { enroll { payment { enroll { payment { enroll { payment {"
    deep += " enroll { payment { enroll { payment { id } } } } } } } } } } } } } } } }"
    aliases = "{ " + " ".join(f"a{i}: packages {{ code }}" for i in range(500)) + " }"
    costly = "{ " + " ".join(f"p{i}: payments(first: 100) {{ edges {{ node {{ id }} }} }}" for i in range(20)) + " }"
    return [
        ("depth", json.dumps({"query": deep}).encode(), "application/json"),
        ("aliases", json.dumps({"query": aliases}).encode(), "application/json"),
        ("cost", json.dumps({"query": costly}).encode(), "application/json"),
        ("bytes", json.dumps({"query": "{ packages { code } }" + " " * 200_000}).encode(), "application/json"),
        ("batch", json.dumps([{"query": "{ packages { code } }"}] * 50).encode(), "application/json"),
        ("malformed", b'{"query": "{ packages { code }', "application/json"),
        ("syntax", json.dumps({"query": "{ packages { code " * 200}).encode(), "application/json"),
        ("content type", b"query { packages { code } }", "text/plain"),
        ("variables", json.dumps({"query": "{ packages { code } }", "variables": [1, 2]}).encode(), "application/json"),
    ]


def test_a_thousand_abusive_requests_are_refused_and_honest_callers_still_get_answers(
    database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(database_url)
    env = {
        "DATABASE_URL": database_url,
        "PAYQL_ENV": "test",
        "JWT_SECRET": TEST_SECRET,
        "LOG_LEVEL": "WARNING",
        "RATE_LIMIT": "1000000/minute",  # the limits under test here are the GraphQL ones, not the rate limit
    }
    bodies = hostile_bodies()
    statuses: Counter[tuple[str, int]] = Counter()
    leaks: list[str] = []
    honest: list[float] = []
    flooding = threading.Event()

    with Server(env, tmp_path) as server:
        token = issue_token(settings, "abuser", ttl_seconds=3600)
        headers = {"Authorization": f"Bearer {token}"}
        # one client, a connection per abuser (a fresh httpx.Client per request costs ~60 ms of TLS setup)
        flood = httpx.Client(base_url=server.url, timeout=30, limits=httpx.Limits(max_connections=ABUSERS))

        def abuse(index: int) -> None:
            name, body, content_type = bodies[index % len(bodies)]
            response = flood.post("/graphql", content=body, headers=headers | {"Content-Type": content_type})
            statuses[name, response.status_code] += 1
            text = response.text
            if "Traceback" in text or 'File "' in text or not _coded(response):
                leaks.append(f"{name}: {response.status_code} {text[:200]}")

        def honest_caller() -> None:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                while flooding.is_set():
                    started = time.monotonic()
                    answer = client.post("/graphql", json={"query": "{ packages { code } }"}, headers=headers)
                    honest.append(time.monotonic() - started)
                    assert answer.status_code == 200, answer.text
                    assert [p["code"] for p in answer.json()["data"]["packages"]][:1] == ["trial"]
                    time.sleep(0.05)

        flooding.set()
        watcher = threading.Thread(target=honest_caller)
        watcher.start()
        try:
            with ThreadPoolExecutor(max_workers=ABUSERS) as pool:
                list(pool.map(abuse, range(REQUESTS)))
        finally:
            flood.close()
            flooding.clear()
            watcher.join()
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200

    assert sum(statuses.values()) == REQUESTS
    assert leaks == []
    assert all(status < 500 for _, status in statuses), statuses
    refused = {name for (name, status) in statuses if status == 400 or status in {413, 415}}
    assert refused >= {"batch", "malformed", "bytes", "content type", "variables"}, statuses
    assert len(honest) >= 3, "the honest caller got too few answers"
    assert max(honest) < HONEST_DEADLINE, sorted(honest)[-5:]


def _coded(response: httpx.Response) -> bool:
    """A refusal names its reason: every GraphQL error carries `extensions.code`."""
    try:
        body: Any = response.json()
    except ValueError:
        return False
    errors = body.get("errors") if isinstance(body, dict) else None
    return bool(errors) and all(isinstance(e, dict) and e.get("extensions", {}).get("code") for e in errors)
