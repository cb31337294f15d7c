"""#14 goal 1, measured deterministically: Python calls per request of the GraphQL list request against the minimal
route (bench/minimal_app.py), and their in-process time ratio.

Seeds a database as `make bench` does (bench/run.py's `seed`, same seed), builds the same app as the benchmark
(bench/bench_app.py: payql beside the minimal app, one ASGI callable), runs its lifespan, then drives it in process
with a bare ASGI call per request (no HTTP client, no socket: what is counted is the app's own work, the thread hop
of the query pool included). `sys.setprofile` counts Python calls (and C calls, apart) per request; the time ratio is
measured without the profiler, the two routes alternating in rounds, by the wall clock and by the process's CPU time
(steadier on a shared machine). Last, the garbage collector's share: 32 concurrent callers (as `make bench`'s
connections) send 60 list requests each while a `gc.callbacks` timer adds up the collections' time.

    .venv/bin/python bench/calls.py [--requests 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run  # noqa: E402 - bench/run.py: the seed, the query and the token

USER = "user-000"


def _scope(method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


class Driver:
    """One request at a time through the ASGI app, as uvicorn would call it (minus the socket)."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        body = json.dumps({"query": run.LIST_QUERY}).encode()
        auth = (b"authorization", f"Bearer {token}".encode())
        self.graphql = (
            _scope(
                "POST",
                "/graphql",
                b"",
                [
                    (b"host", b"127.0.0.1:8000"),
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    auth,
                ],
            ),
            body,
        )
        self.raw = (
            _scope("GET", "/raw/payments", f"user={USER}&first=20".encode(), [(b"host", b"127.0.0.1:8000"), auth]),
            b"",
        )

    async def call(self, request: tuple[dict[str, Any], bytes]) -> bytes:
        scope, body = request
        scope = {**scope, "state": {}}
        sent = False
        status = 0
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # a disconnect never comes
            raise AssertionError

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        if status != 200:
            raise SystemExit(f"{scope['path']} answered {status}: {b''.join(chunks)[:500]!r}")
        return b"".join(chunks)


async def lifespan(app: Any) -> tuple[asyncio.Task[None], asyncio.Queue[dict[str, Any]]]:
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put)
    )
    started = await outbox.get()
    if started["type"] != "lifespan.startup.complete":
        raise SystemExit(f"start-up failed: {started}")
    return task, inbox


class Counting:
    """Counts Python calls (and C calls, apart) in every thread: installed before the app starts any thread
    (`threading.setprofile` reaches only threads started after it), counting only while `on`."""

    def __init__(self) -> None:
        self.on = False
        self.python = 0
        self.c_calls = 0
        self.where: Counter[tuple[str, str]] = Counter()

    def __call__(self, frame: Any, event: str, _arg: Any) -> None:
        if not self.on:
            return
        if event == "call":
            self.python += 1
            code = frame.f_code
            self.where[code.co_filename, code.co_name] += 1
        elif event == "c_call":
            self.c_calls += 1


def _package(filename: str) -> str:
    for marker in ("site-packages/", "lib/python3"):
        if marker in filename:
            rest = filename.split(marker, 1)[1]
            return rest.split("/", 1)[0] if marker == "site-packages/" else "stdlib:" + rest.split("/")[1]
    if "/payql/" in filename:
        return "payql." + filename.split("/payql/", 1)[1].replace("/", ".").removesuffix(".py")
    return Path(filename).name


async def timed(driver: Driver, request: tuple[dict[str, Any], bytes], n: int) -> tuple[float, float]:
    """Requests per second of wall clock, and per second of the process's CPU time (every thread: steadier than
    the wall clock on a shared machine)."""
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        await driver.call(request)
    return n / (time.perf_counter() - started), n / (time.process_time() - cpu)


async def counted(driver: Driver, counting: Counting, *, verbose: bool) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    n = 50
    for name in ("graphql", "raw"):
        counting.python = counting.c_calls = 0
        counting.where = Counter()
        counting.on = True
        for _ in range(n):
            await driver.call(getattr(driver, name))
        counting.on = False
        summary[f"{name}_calls"] = round(counting.python / n)
        summary[f"{name}_c_calls"] = round(counting.c_calls / n)
        if verbose:
            by_module: Counter[str] = Counter()
            for (filename, _), count in counting.where.items():
                by_module[_package(filename)] += count
            print(f"{name}: Python calls per request by module", file=sys.stderr)
            for module, count in by_module.most_common(30):
                print(f"  {count / n:8.1f}  {module}", file=sys.stderr)
            print(f"{name}: by function", file=sys.stderr)
            for (filename, function), count in counting.where.most_common(int(os.environ.get("CALLS_TOP", "60"))):
                print(f"  {count / n:8.1f}  {_package(filename)}:{function}", file=sys.stderr)
    return summary


async def timings(driver: Driver, args: argparse.Namespace) -> dict[str, Any]:
    rates: dict[str, list[tuple[float, float]]] = {"graphql": [], "raw": []}
    for _ in range(args.rounds):
        for name, measured in rates.items():
            measured.append(await timed(driver, getattr(driver, name), args.requests))
    wall = {name: statistics.median(rate for rate, _ in measured) for name, measured in rates.items()}
    cpu = {name: statistics.median(rate for _, rate in measured) for name, measured in rates.items()}
    return {
        "graphql_rps_in_process": round(wall["graphql"], 1),
        "raw_rps_in_process": round(wall["raw"], 1),
        "graphql_vs_raw_in_process": round(wall["graphql"] / wall["raw"], 3),
        "graphql_per_cpu_s": round(cpu["graphql"], 1),
        "raw_per_cpu_s": round(cpu["raw"], 1),
        "graphql_vs_raw_cpu": round(cpu["graphql"] / cpu["raw"], 3),
    }


async def collector_share(driver: Driver, callers: int = 32, each: int = 60) -> dict[str, Any]:
    """The cyclic garbage collector's time as a share of the wall time, and its collections per 1,000 requests,
    under `callers` concurrent GraphQL list requests: what a request leaves in reference cycles, it pays for here."""
    spent, started = 0.0, 0.0
    collections = 0

    def timer(phase: str, _info: dict[str, Any]) -> None:
        nonlocal spent, started, collections
        if phase == "start":
            started = time.perf_counter()
        else:
            spent += time.perf_counter() - started
            collections += 1

    async def caller() -> None:
        for _ in range(each):
            await driver.call(driver.graphql)

    gc.collect()
    gc.callbacks.append(timer)
    try:
        begun = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(callers)))
        wall = time.perf_counter() - begun
    finally:
        gc.callbacks.remove(timer)
    return {
        "graphql_gc_share": round(spent / wall, 4),
        "graphql_gc_collections_per_1000": round(1000 * collections / (callers * each), 1),
    }


async def phase(args: argparse.Namespace) -> dict[str, Any]:
    """In a child process: `count` (calls per request, the profiler on every thread) or `time` (no profiler)."""
    counting = Counting()
    if args.phase == "count":
        import threading  # noqa: PLC0415

        threading.setprofile(counting)
        sys.setprofile(counting)
    os.environ.update(
        {"DATABASE_URL": args.url, "JWT_SECRET": run.SECRET, "LOG_LEVEL": "WARNING", "RATE_LIMIT": "100000000/minute"}
    )
    import bench_app  # noqa: PLC0415

    from payql.auth import issue_token  # noqa: PLC0415
    from payql.settings import Settings  # noqa: PLC0415

    token = issue_token(Settings(_env_file=None, jwt_secret=run.SECRET), USER, ttl_seconds=3600)
    app = bench_app.create_with_webhooks()
    task, inbox = await lifespan(app)
    driver = Driver(app, token)
    graphql = json.loads(await driver.call(driver.graphql))
    raw = json.loads(await driver.call(driver.raw))
    if graphql != raw:
        raise SystemExit(f"the minimal route answers other data than GraphQL:\n{graphql}\n{raw}")
    for _ in range(30):  # warm-up: caches, plans, pools
        await driver.call(driver.graphql)
        await driver.call(driver.raw)
    if args.phase == "count":
        summary = await counted(driver, counting, verbose=args.verbose)
    else:
        summary = await timings(driver, args) | await collector_share(driver)
    await inbox.put({"type": "lifespan.shutdown"})
    await task
    return summary


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200, help="requests per timed round and route")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (median kept)")
    parser.add_argument("--verbose", action="store_true", help="calls per request by module")
    parser.add_argument("--phase", choices=["count", "time"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(asyncio.run(phase(args))))
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="payql-calls-"))
    url = f"sqlite:///{workdir / 'bench.db'}"
    summary: dict[str, Any] = {}
    try:
        run.seed(url, random.Random(7))
        for name in ("count", "time"):
            command = [sys.executable, __file__, "--phase", name, "--url", url]
            command += ["--requests", str(args.requests), "--rounds", str(args.rounds)]
            if args.verbose:
                command.append("--verbose")
            out = subprocess.run(command, check=True, capture_output=False, stdout=subprocess.PIPE, text=True).stdout
            summary.update(json.loads(out.strip().splitlines()[-1]))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
