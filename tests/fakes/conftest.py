"""Every test of the fakes also checks the shape of all the fakes sent during it (tests/fakes/shapes.py)."""

from __future__ import annotations

import weakref
from collections.abc import Iterator

import pytest

from fakes._http import FakeServer
from fakes.shapes import Cursor, check_fake_output

_cursors: weakref.WeakKeyDictionary[FakeServer, Cursor] = weakref.WeakKeyDictionary()


@pytest.fixture(autouse=True)
def _shapes_match_the_sdks() -> Iterator[None]:
    """After each test: every answer and event of every fake still alive must match the provider's SDK types."""
    yield
    problems: list[str] = []
    for server in list(FakeServer.live):
        problems += check_fake_output(server.fake, server.sent, _cursors.setdefault(server, Cursor()))
    assert problems == [], "the fake sent what the provider's SDK types do not allow:\n" + "\n".join(problems)
