"""prometheus-client's multiprocess mode: with PROMETHEUS_MULTIPROC_DIR set, `/metrics` of one worker shows what
every worker counted (README, Operations)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

COUNT_ONE = """
from payql.metrics import Metrics
Metrics().payments.labels("stripe", "succeeded").inc()
"""
SCRAPE = """
import asyncio
from starlette.requests import Request
from payql.metrics import Metrics
request = Request({"type": "http", "method": "GET", "path": "/metrics", "headers": []})
print(asyncio.run(Metrics(multiprocess=True).endpoint(request)).body.decode())
"""


def run(code: str, directory: Path) -> str:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    done = subprocess.run(  # noqa: S603 - this interpreter, code from the test
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout


def test_the_workers_counts_are_added_up(tmp_path: Path) -> None:
    # given two worker processes that each counted a payment
    run(COUNT_ONE, tmp_path)
    run(COUNT_ONE, tmp_path)

    # when a third scrapes, then it shows both
    assert 'payql_payments_total{outcome="succeeded",provider="stripe"} 2.0' in run(SCRAPE, tmp_path)
