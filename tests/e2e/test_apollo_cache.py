"""README's Apollo Client typePolicies, exactly as README.md prints them, against a live payql.

The snippet is cut out of README.md (the fenced block after the `apollo-type-policies` marker), so that README and
this test cannot drift, and run by `tests/apollo/check_cache.mjs` with @apollo/client in Node: the same payment,
packages and balances are read with `{ amount currency }` and then `{ amount }` selections of their Money fields. A
bare InMemoryCache warns "Cache data may be lost" (proving the check sees warnings); README's must not, and must
hold both selections merged. Node 20+ and `npm ci` in tests/apollo (`make test` runs it) are required: without
them this test fails, saying so.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import documents as doc
from conftest import TEST_SECRET, make_settings
from flows import paid_enroll
from servers import Server

from payql.migrate import upgrade

ROOT = Path(__file__).resolve().parents[2]
APOLLO = ROOT / "tests" / "apollo"
MARKER = "<!-- apollo-type-policies"
_FENCE = re.compile(r"```js\n(.*?)```", re.DOTALL)


def readme_snippet() -> str:
    """The first ```js block after README's marker, as written."""
    text = (ROOT / "README.md").read_text()
    at = text.find(MARKER)
    assert at >= 0, f"README.md has no {MARKER} marker before its Apollo snippet"
    found = _FENCE.search(text, at)
    assert found is not None, "README.md has no ```js block after its apollo-type-policies marker"
    return found.group(1)


def node() -> str:
    found = shutil.which("node")
    assert found is not None, (
        "node is not on PATH: this test runs README's Apollo snippet with Node 20+ (install Node.js and npm, then "
        "`make test`, which runs `npm ci` in tests/apollo)"
    )
    answer = subprocess.run([found, "--version"], capture_output=True, text=True, check=True)  # noqa: S603
    version = answer.stdout.strip()
    assert int(version.lstrip("v").split(".")[0]) >= 20, f"Node 20+ is needed, found {version}"
    assert (APOLLO / "node_modules" / "@apollo" / "client").is_dir(), (
        "tests/apollo/node_modules is missing: run `make apollo-deps` (npm ci in tests/apollo; `make test` does it)"
    )
    return found


def run_check(node_path: str, snippet_dir: Path, url: str, token: str, payment_id: str) -> dict[str, Any]:
    snippet = snippet_dir / "readme-cache.mjs"
    snippet.write_text(readme_snippet())
    # `@apollo/client` in the snippet resolves from beside it: the same installed copy as the check script's.
    (snippet_dir / "node_modules").symlink_to(APOLLO / "node_modules", target_is_directory=True)
    done = subprocess.run(  # noqa: S603 - our own script, arguments from the test
        [
            node(),
            "--conditions=development",
            str(APOLLO / "check_cache.mjs"),
            str(snippet),
            f"{url}/graphql",
            token,
            payment_id,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    assert lines, f"check_cache.mjs printed nothing (exit {done.returncode}):\n{done.stderr[-3000:]}"
    report: dict[str, Any] = json.loads(lines[-1])
    assert done.returncode == 0, f"{report['problems']}\n{done.stderr[-3000:]}"
    return report


def test_readme_type_policies_merge_money_selections_without_apollo_warnings(tmp_path: Path) -> None:
    node_path = node()  # before anything starts: without Node and the lockfile's packages, fail saying so
    # given a live payql in mock mode, and a payee with a paid enroll (a payment, a balance in USD)
    database_url = f"sqlite:///{tmp_path / 'payql.db'}"
    upgrade(database_url)
    env = {"DATABASE_URL": database_url, "PAYQL_ENV": "test", "JWT_SECRET": TEST_SECRET, "LOG_LEVEL": "WARNING"}
    with Server(env, tmp_path) as server:
        api = server.api(make_settings(database_url))
        client, mentor = api.user("apollo-client"), api.user("apollo-mentor", "provider")
        payment = paid_enroll(client, mentor, amount="80.00", currency="USD")

        # the new ids, as GraphQL gives them
        balances = mentor.data("{ balances { id accounts { id currency } } }")["balances"]
        assert balances["id"] == f"balances:{mentor.id}"
        assert balances["accounts"] == [{"id": f"balance:{mentor.id}:USD", "currency": "USD"}]
        packages = mentor.data("{ packages { id code } }")["packages"]
        assert all(package["id"] == package["code"] for package in packages)
        assert mentor.data(doc.PAYMENT, id=payment["id"])["payment"]["amount"]["amount"] == "80.00"

        # when README's snippet caches two selections of the same objects
        report = run_check(node_path, tmp_path, server.url, mentor.token, payment["id"])

    # then a bare cache warned, README's did not, and README's holds both selections merged
    assert report["bare"]["warnings"], report["bare"]
    assert any("amount field of a Payment object" in line for line in report["bare"]["warnings"])
    assert report["readme"]["warnings"] == []
    cached = report["readme"]["cached"]
    assert cached["payment"]["amount"] == {"__typename": "Money", "amount": "80.00", "currency": "USD"}
    assert cached["balances"]["accounts"][0]["available"]["currency"] == "USD"
    assert report["readme"]["partial"]["payment"]["amount"] == {"__typename": "Money", "amount": "80.00"}
