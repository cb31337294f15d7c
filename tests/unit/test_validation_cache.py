"""Validation is kept per query text, and per schema and rules: a verdict is never another schema's."""

from __future__ import annotations

from payql.schema import build_schema
from payql.settings import Settings

SETTINGS = Settings(_env_file=None)  # type: ignore[call-arg]
DEEP = "{ payments { edges { node { enroll { payment { enroll { id } } } } } } }"


def _codes(settings: Settings, query: str) -> list[str]:
    result = build_schema(settings).execute_sync(query)
    return [str((error.extensions or {}).get("code")) for error in result.errors or []]


def test_each_schema_keeps_its_own_verdict_on_the_same_text() -> None:
    shallow = SETTINGS.model_copy(update={"graphql_max_depth": 3})

    for _ in range(2):
        assert "GRAPHQL_VALIDATION_FAILED" in _codes(shallow, DEEP)
        assert "GRAPHQL_VALIDATION_FAILED" not in _codes(SETTINGS, DEEP)


def test_an_invalid_text_is_refused_every_time() -> None:
    for _ in range(3):
        assert _codes(SETTINGS, "{ payments { nope } }") == ["GRAPHQL_VALIDATION_FAILED"]
