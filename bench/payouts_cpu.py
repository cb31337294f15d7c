"""CPU per payout of `payql payouts run`, a measure that holds on a busy machine (bench/README.md "Payout run").

Seeds a fresh SQLite database with N providers as `bench/payouts.py` does, serves the Stripe fake from this process
(no added latency by default: waiting costs no CPU; `--latency-ms 50` as `make bench-payouts`), and runs `payql
payouts run --auto-approve --concurrency C` in a subprocess: prints the command's CPU seconds (user + system, from rusage) per payout (less those of a run with one
provider: start-up and imports) and its wall-clock seconds. With `--profile FILE` it also runs the command under
cProfile (main thread only: at concurrency 1 that is everything) with one provider and with N, keeps the second for
`python -m pstats FILE`, and prints the Python function calls and SQL statements (the sqlite3 cursor's `execute`
and `executemany`) per payout, from the difference: counts that hold on a busy machine, where CPU seconds vary.

    .venv/bin/python bench/payouts_cpu.py --providers 300 --profile /tmp/payouts.prof
"""

from __future__ import annotations

import argparse
import itertools
import json
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from payouts import STRIPE_KEY, FakeStripe, check, command_env, fresh_database, seed  # type: ignore[import-not-found]

_RUNS = itertools.count()
WALL: list[float] = []


def run(providers: int, concurrency: int, workdir: Path, profile: Path | None, latency_ms: int = 0) -> float:
    """One fresh run: the command's CPU seconds (its wall-clock seconds go to `WALL`)."""
    url = fresh_database(None, workdir, f"cpu-{next(_RUNS)}")
    seed(url, providers)
    with FakeStripe(secret_key=STRIPE_KEY, latency_ms=latency_ms) as fake:
        env = command_env(url, STRIPE_SECRET_KEY=STRIPE_KEY, STRIPE_API_BASE=fake.url)
        payql = Path(sys.executable).with_name("payql")
        command = [str(payql), "payouts", "run", "--auto-approve", "--concurrency", str(concurrency)]
        if profile is not None:
            command = [sys.executable, "-m", "cProfile", "-o", str(profile), *command]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(command, env=env, cwd=workdir, capture_output=True, text=True, check=False)
        WALL.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise SystemExit(f"payql payouts run failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        check(url, fake, providers, workdir)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def counts(profile: Path) -> tuple[int, int]:
    """Python function calls the profiled command made, and the SQL statements it sent (calls of the sqlite3
    cursor's execute and executemany)."""
    stats = pstats.Stats(str(profile))
    sql = {"<method 'execute' of 'sqlite3.Cursor' objects>", "<method 'executemany' of 'sqlite3.Cursor' objects>"}
    statements = sum(
        calls
        for (_file, _line, name), (_cc, calls, *_rest) in stats.stats.items()  # type: ignore[attr-defined]
        if name in sql
    )
    return stats.total_calls, statements  # type: ignore[attr-defined]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--providers", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="plain runs; the smallest CPU is reported")
    parser.add_argument("--latency-ms", type=int, default=0, help="added by the fake to every request")
    parser.add_argument("--profile", type=Path, help="also run under cProfile and keep its stats here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="payql-bench-payouts-cpu-") as tmp:
        workdir = Path(tmp)
        fixed = min(run(1, args.concurrency, workdir, None, args.latency_ms) for _ in range(args.repeat))
        WALL.clear()
        cpus = [run(args.providers, args.concurrency, workdir, None, args.latency_ms) for _ in range(args.repeat)]
        walls = list(WALL)
        result: dict[str, object] = {
            "providers": args.providers,
            "concurrency": args.concurrency,
            "start_cpu_seconds": round(fixed, 3),
            "cpu_seconds": [round(cpu, 3) for cpu in cpus],
            "wall_seconds": [round(wall, 2) for wall in walls],
            "cpu_ms_per_payout": round((min(cpus) - fixed) * 1000 / (args.providers - 1), 2),
        }
        if args.profile is not None:  # calls and statements per payout: N providers less one
            one = args.profile.with_suffix(".one")
            run(1, args.concurrency, workdir, one, args.latency_ms)
            run(args.providers, args.concurrency, workdir, args.profile, args.latency_ms)
            (calls_1, sql_1), (calls_n, sql_n) = counts(one), counts(args.profile)
            result["python_calls_per_payout"] = round((calls_n - calls_1) / (args.providers - 1))
            result["sql_statements_per_payout"] = round((sql_n - sql_1) / (args.providers - 1), 2)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
