"""The lock files (requirements/*.txt, pip-tools with hashes) agree with pyproject.toml and with each other."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+) \\$", re.MULTILINE)


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def pins(lock: str) -> dict[str, str]:
    text = (ROOT / "requirements" / lock).read_text(encoding="utf-8")
    return {name.lower().replace("_", "-"): version for name, version in PIN.findall(text)}


def test_every_dependency_of_pyproject_is_pinned_in_the_locks() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    runtime = {_name(item) for item in project["dependencies"]}
    test = {_name(item) for item in project["optional-dependencies"]["test"]}

    assert runtime - pins("runtime.txt").keys() == set(), "run `make lock` after changing pyproject.toml"
    assert (runtime | test) - pins("test.txt").keys() == set(), "run `make lock` after changing pyproject.toml"
    assert test & pins("runtime.txt").keys() == set(), "the runtime lock must not carry the test tools"


def test_the_test_lock_runs_the_very_versions_the_runtime_lock_serves() -> None:
    runtime, test = pins("runtime.txt"), pins("test.txt")
    assert len(runtime) > 20
    assert {name: test.get(name) for name in runtime} == runtime


def test_every_pin_carries_hashes_and_no_machine_specific_index() -> None:
    for lock in ("runtime.txt", "test.txt"):
        text = (ROOT / "requirements" / lock).read_text(encoding="utf-8")
        body = re.sub(r"\A(#[^\n]*\n|\n)*", "", text)  # pip-compile's header (with or without a blank line after)
        blocks = re.split(r"\n(?=[A-Za-z0-9])", body)
        assert all("--hash=sha256:" in block for block in blocks if "==" in block), lock
        assert "--extra-index-url" not in text
        assert "--find-links" not in text
