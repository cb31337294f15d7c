"""The README's walkthrough runs as written, so that it cannot drift from the service.

`README.md`, section "Try it", holds shell blocks (the `payql token` commands) and GraphQL blocks, each GraphQL
block preceded by a comment `<!-- run: as SUB; expect PATH = VALUE; … -->`. This test starts `payql serve` on a fresh
SQLite database in mock mode (no keys, as `make serve` does), makes the tokens with the README's own commands, and
sends every block in order over HTTP as the user it names (`nobody`: no token). `"enr_…"` and `"pay_…"` stand for the
newest enroll and payment id an earlier answer gave. Every answer must be free of errors (top-level and payload
`errors`), and each `expect` must hold: PATH is a dotted path into `data` (list indexes are numbers), VALUE the text
of the value or `[]`.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers import Server, payql

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Try it"
RUN = re.compile(r"<!-- run: (?P<spec>[^\n]*?) -->\s*```graphql\n(?P<query>.*?)```", re.DOTALL)
GRAPHQL_BLOCK = re.compile(r"```graphql\n")
SHELL_BLOCK = re.compile(r"```sh\n(?P<body>.*?)```", re.DOTALL)
PLACEHOLDERS = {"enr_…": "enr", "pay_…": "pay"}


@dataclass
class Step:
    user: str
    query: str
    expects: list[tuple[str, str]] = field(default_factory=list)


def walkthrough() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    return text[start:end]


def _dedent(block: str) -> str:
    lines = block.splitlines()
    indent = min((len(line) - len(line.lstrip()) for line in lines if line.strip()), default=0)
    return "\n".join(line[indent:] for line in lines)


def steps(section: str) -> list[Step]:
    found: list[Step] = []
    for match in RUN.finditer(section):
        clauses = [clause.strip() for clause in match["spec"].split(";")]
        assert clauses[0].startswith("as "), f"a run comment must start with 'as SUB': {match['spec']}"
        step = Step(user=clauses[0].removeprefix("as ").strip(), query=_dedent(match["query"]))
        for clause in clauses[1:]:
            well_formed = clause.startswith("expect ") and " = " in clause
            assert well_formed, f"not 'expect PATH = VALUE': {clause}"
            path, value = clause.removeprefix("expect ").split(" = ", 1)
            step.expects.append((path.strip(), value.strip()))
        found.append(step)
    return found


def token_commands(section: str) -> list[list[str]]:
    commands = []
    for block in SHELL_BLOCK.finditer(section):
        for line in block["body"].splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0].endswith("payql") and words[1:2] == ["token"]:
                commands.append(words[1:])
    return commands


def at(data: Any, path: str) -> Any:
    for part in path.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def ids(answer: Any, newest: dict[str, str]) -> None:
    if isinstance(answer, dict):
        for key, value in answer.items():
            if key == "id" and isinstance(value, str) and value[:4] in {"enr_", "pay_"}:
                newest[value[:3]] = value
            else:
                ids(value, newest)
    elif isinstance(answer, list):
        for item in answer:
            ids(item, newest)


def payload_errors(data: Any) -> list[Any]:
    """Every non-empty `errors` list of a mutation payload."""
    return [value["errors"] for value in data.values() if isinstance(value, dict) and value.get("errors")]


def test_the_walkthrough_has_a_run_comment_before_every_graphql_block_and_makes_every_token() -> None:
    section = walkthrough()
    assert len(steps(section)) == len(GRAPHQL_BLOCK.findall(section)) >= 15
    users = {step.user for step in steps(section)} - {"nobody"}
    made = {command[command.index("--sub") + 1] for command in token_commands(section)}
    assert users <= made, f"steps run as users no README command makes a token for: {users - made}"


def test_the_readme_walkthrough_runs_in_order_against_payql_serve(tmp_path: Path) -> None:
    section = walkthrough()
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'walkthrough.db'}", "PAYQL_ENV": "development"}
    migrated = payql("migrate", env=env, cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr

    tokens: dict[str, str] = {}
    for command in token_commands(section):
        made = payql(*command, env=env, cwd=tmp_path)
        assert made.returncode == 0, made.stderr
        tokens[command[command.index("--sub") + 1]] = made.stdout.strip()

    newest: dict[str, str] = {}
    with Server(env, tmp_path) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        for number, step in enumerate(steps(section), start=1):
            query = step.query
            for placeholder, kind in PLACEHOLDERS.items():
                if placeholder in query:
                    assert kind in newest, f"step {number} needs an {kind} id no earlier step gave"
                    query = query.replace(placeholder, newest[kind])
            headers = {} if step.user == "nobody" else {"Authorization": f"Bearer {tokens[step.user]}"}
            response = client.post("/graphql", json={"query": query}, headers=headers)
            assert response.status_code == 200, (number, response.text)
            body = response.json()
            assert "errors" not in body, (number, step.query, body)
            assert payload_errors(body["data"]) == [], (number, step.query, body)
            for path, expected in step.expects:
                value = at(body["data"], path)
                shown = "[]" if value == [] else str(value)
                assert shown == expected, f"step {number}: {path} is {value!r}, the README says {expected}"
            ids(body["data"], newest)

    checked = payql("ledger", "check", env=env, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize(
    ("spec", "problem"),
    [("as client-1; expect status", "not 'expect PATH = VALUE'"), ("client-1", "must start with 'as SUB'")],
)
def test_a_malformed_run_comment_is_refused_not_ignored(spec: str, problem: str) -> None:
    with pytest.raises(AssertionError, match=re.escape(problem)):
        steps(f"<!-- run: {spec} -->\n```graphql\n{{ packages {{ code }} }}\n```")
