"""Several replicas (`make bench-replicas`): `payql serve` twice behind HAProxy, sharing PostgreSQL and Redis.

1. seeds `BENCH_DATABASE_URL` (PostgreSQL; default: a `payql_bench_replicas` database on the local server, made
   afresh) with bench/run.py's 10,000 payments;
2. read path: wrk on GraphQL `payments(first: 20)` against (a) one replica with one worker, (b) one replica with
   two workers, (c) two one-worker replicas behind HAProxy (round robin, from Debian's package; `make
   bench-replicas` installs it); interleaved rounds, medians;
3. races through the load balancer: 20 concurrent partial refunds of 7.00 on one 100.00 payment, sent to both
   replicas alternately, must pass 14 times and refuse 6, and `payql ledger check` must pass afterwards;
4. prints a table and, last, one JSON line.

On this machine kind (2 cores for the servers, PostgreSQL, HAProxy and wrk together) the ratios say how much of
the second core a second process can take; they cannot show what a second machine would add. So each scenario's
run also counts the CPU every role spends per request (the payql processes, every PostgreSQL process, HAProxy,
wrk), and the table prints the machine's ceiling for it: the cores divided by the CPU one request costs, as a
multiple of one worker's measured rate. A ratio near its ceiling is the machine's limit, not payql's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402 - bench/run.py's seeding, wrk and server helpers
from pgdb import recreate_database  # noqa: E402
from webhooks_pg import cpu_seconds, postgres_cpu_seconds  # noqa: E402 - CPU of a process tree, of PostgreSQL

from payql.auth import issue_token  # noqa: E402
from payql.settings import Settings  # noqa: E402

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/payql_bench_replicas"
REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")
SECRET = bench.SECRET
MUTATION_HEADERS = {"Content-Type": "application/json"}


def serve(url: str, port: int, workers: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": REDIS,
        "JWT_SECRET": SECRET,
        "LOG_LEVEL": "WARNING",
        "RATE_LIMIT": "100000000/minute",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "payql.cli", "serve", "--no-migrate", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    wait_for(f"http://127.0.0.1:{port}/readyz")
    return server


ROLES = ("app", "postgres", "haproxy", "wrk")


def role_cpu(apps: list[int], proxy: int) -> dict[str, float]:
    """CPU seconds so far of every role: the payql processes (with their workers), PostgreSQL, HAProxy, and wrk
    (this process's ended children: each wrk run is waited for)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "app": sum(cpu_seconds(pid) for pid in apps),
        "postgres": postgres_cpu_seconds(),
        "haproxy": cpu_seconds(proxy),
        "wrk": children.ru_utime + children.ru_stime,
    }


def wait_for(url: str) -> None:
    for _ in range(300):
        try:
            urllib.request.urlopen(url, timeout=1).read()  # noqa: S310 - loopback
        except OSError:
            time.sleep(0.1)
        else:
            return
    raise SystemExit(f"{url} never answered")


def haproxy(port: int, backends: list[int], workdir: Path) -> subprocess.Popen[bytes]:
    config = workdir / "haproxy.cfg"
    servers = "\n".join(f"    server s{i} 127.0.0.1:{p} check" for i, p in enumerate(backends))
    config.write_text(
        f"""global
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend payql
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /readyz
{servers}
"""
    )
    proxy = subprocess.Popen(["haproxy", "-f", str(config), "-db"], stdout=subprocess.DEVNULL)
    wait_for(f"http://127.0.0.1:{port}/healthz")
    return proxy


def stop(*processes: subprocess.Popen[bytes]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout=20)


def graphql(base: str, token: str, query: str, **variables: Any) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{base}/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={**MUTATION_HEADERS, "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - loopback
        body: dict[str, Any] = json.loads(answer.read())
    if body.get("errors") or not body.get("data"):
        raise SystemExit(f"GraphQL refused: {body}")
    return body


def refund_race(bases: list[str], settings: Settings) -> tuple[int, int]:
    """20 concurrent refunds of 7.00 of a 100.00 payment, alternating between the replicas: (passed, refused)."""
    client, mentor = (
        issue_token(settings, "race-client", ttl_seconds=600),
        issue_token(settings, "race-mentor", ["provider"], ttl_seconds=600),
    )
    graphql(bases[0], mentor, "{ payments { totalCount } }")  # the mentor is known once they have called
    enroll = graphql(
        bases[0],
        client,
        'mutation { createEnroll(input: {providerId: "race-mentor", title: "Race", '
        'price: {amount: "100.00", currency: "USD"}}) { enroll { id } errors { code } } }',
    )["data"]["createEnroll"]["enroll"]["id"]
    created = graphql(
        bases[1],
        client,
        "mutation($e: ID!) { createIntent(input: {enrollId: $e, provider: STRIPE, captureMethod: AUTOMATIC}) "
        "{ payment { id } errors { code } } }",
        e=enroll,
    )["data"]["createIntent"]["payment"]["id"]
    paid = graphql(bases[0], client, "mutation($p: ID!) { confirm(paymentId: $p) { payment { status } } }", p=created)
    assert paid["data"]["confirm"]["payment"]["status"] == "SUCCEEDED", paid
    results: list[bool] = []
    gate = threading.Barrier(20)

    def one(index: int) -> None:
        gate.wait()
        answer = graphql(
            bases[index % 2],
            mentor,
            'mutation($p: ID!, $k: String!) { refund(input: {paymentId: $p, amount: {amount: "7.00", '
            'currency: "USD"}, idempotencyKey: $k}) { refund { id } errors { code } } }',
            p=created,
            k=f"race-{index}",
        )
        results.append(answer["data"]["refund"]["refund"] is not None)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(results), len(results) - sum(results)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    for tool in ("wrk", "haproxy"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed: `make bench-replicas` installs it")
    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    recreate_database(url)
    bench.seed(url, random.Random(7))
    settings = Settings(_env_file=None, jwt_secret=SECRET, database_url=url)  # type: ignore[call-arg]
    token = issue_token(settings, "user-000", ttl_seconds=3600)
    body = {"query": bench.LIST_QUERY}
    workdir = Path(tempfile.mkdtemp(prefix="payql-replicas-"))
    ports = [bench.free_port() for _ in range(4)]
    one, two, lb_port, double = ports
    runs: dict[str, list[dict[str, float]]] = {"one_worker": [], "two_workers": [], "two_replicas": []}
    spent: dict[str, dict[str, float]] = {name: dict.fromkeys(ROLES, 0.0) for name in runs}
    served = dict.fromkeys(runs, 0.0)
    servers = [serve(url, one, 1), serve(url, two, 1)]
    proxy = haproxy(lb_port, [one, two], workdir)
    doubled = serve(url, double, 2)
    targets = {
        "one_worker": f"http://127.0.0.1:{one}/graphql",
        "two_workers": f"http://127.0.0.1:{double}/graphql",
        "two_replicas": f"http://127.0.0.1:{lb_port}/graphql",
    }
    try:
        for target in targets.values():
            bench.wrk(target, body, token, 2, args.connections)
        apps = [server.pid for server in (*servers, doubled)]
        for _ in range(args.rounds):
            for name, target in targets.items():
                before = role_cpu(apps, proxy.pid)
                runs[name].append(bench.wrk(target, body, token, args.seconds, args.connections))
                after = role_cpu(apps, proxy.pid)
                for role in ROLES:
                    spent[name][role] += after[role] - before[role]
                served[name] += runs[name][-1]["rps"] * args.seconds
        passed, refused = refund_race([f"http://127.0.0.1:{one}", f"http://127.0.0.1:{two}"], settings)
    finally:
        stop(proxy, doubled, *servers)
    checked = subprocess.run(
        [sys.executable, "-m", "payql.cli", "ledger", "check"],
        env={**os.environ, "DATABASE_URL": url, "JWT_SECRET": SECRET},
        capture_output=True,
        text=True,
        check=False,
    )
    rps = {name: statistics.median(run["rps"] for run in measured) for name, measured in runs.items()}
    cores = os.cpu_count() or 1
    per_request = {name: {role: 1000 * spent[name][role] / served[name] for role in ROLES} for name in runs}
    ceiling = {name: cores / (sum(per_request[name].values()) / 1000) / rps["one_worker"] for name in runs}
    print(f"{'scenario':<14} {'req/s':>8} {'x one':>6} {'ceiling':>8}  CPU ms per request")
    for name, value in rps.items():
        roles = ", ".join(f"{role} {ms:.2f}" for role, ms in per_request[name].items())
        ratio = value / rps["one_worker"]
        print(f"{name:<14} {value:8.0f} {ratio:6.2f} {ceiling[name]:7.2f}x  {roles}")
    print(f"(ceiling: {cores} cores / the CPU one request costs, over one worker's rate)")
    print(f"refund race through both replicas: {passed} passed, {refused} refused (14 and 6 expected)")
    print(f"payql ledger check: exit {checked.returncode} {checked.stdout.strip()[:200]}")
    result = {
        "one_worker_rps": round(rps["one_worker"], 1),
        "two_workers_vs_one": round(rps["two_workers"] / rps["one_worker"], 3),
        "two_replicas_vs_one": round(rps["two_replicas"] / rps["one_worker"], 3),
        "two_workers_ceiling": round(ceiling["two_workers"], 3),
        "two_replicas_ceiling": round(ceiling["two_replicas"], 3),
        "cpu_ms_per_request": {
            name: {role: round(ms, 3) for role, ms in roles.items()} for name, roles in per_request.items()
        },
        "race_passed": passed,
        "race_refused": refused,
        "ledger_check": checked.returncode,
    }
    print(json.dumps(result))
    return 0 if (passed, refused, checked.returncode) == (14, 6, 0) else 1


if __name__ == "__main__":
    sys.exit(main())
