"""Test helpers: a synchronous client for the ASGI app (httpx over an anyio portal, lifespan included), users
with real tokens, and small assertions on GraphQL answers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import anyio.from_thread
import httpx
from starlette.applications import Starlette

from payql.auth import issue_token
from payql.settings import Settings


class Api:
    def __init__(self, app: Starlette, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self._stack = contextlib.ExitStack()
        self._portal: anyio.from_thread.BlockingPortal
        self._client: httpx.AsyncClient

    def __enter__(self) -> Self:
        self._portal = self._stack.enter_context(anyio.from_thread.start_blocking_portal())
        self._stack.enter_context(self._portal.wrap_async_context_manager(self.app.router.lifespan_context(self.app)))
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app, client=("127.0.0.1", 50000)), base_url="http://testserver"
        )
        self._stack.callback(lambda: self._portal.call(self._client.aclose))
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self._portal.call(lambda: self._client.request(method, path, **kwargs))

    def token(self, sub: str, *roles: str, ttl: int = 3600, issued: datetime | None = None) -> str:
        return issue_token(self.settings, sub, roles=roles, ttl_seconds=ttl, now=issued)

    def user(self, sub: str, *roles: str) -> User:
        return User(self, sub, self.token(sub, *roles))

    def anonymous(self) -> User:
        return User(self, "", None)

    def graphql(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = self.request("POST", "/graphql", json={"query": query, "variables": variables}, headers=headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


class User:
    """Someone calling the API with their own token."""

    def __init__(self, api: Api, sub: str, token: str | None) -> None:
        self.api = api
        self.id = sub
        self.token = token

    def gql(self, query: str, **variables: Any) -> dict[str, Any]:
        return self.api.graphql(query, variables or None, token=self.token)

    def data(self, query: str, **variables: Any) -> dict[str, Any]:
        """The answer's data, asserting there were no GraphQL errors."""
        body = self.gql(query, **variables)
        assert "errors" not in body, body
        data: dict[str, Any] = body["data"]
        return data

    def ok(self, query: str, **variables: Any) -> dict[str, Any]:
        """A mutation's payload, asserting it returned no `errors`."""
        data = self.data(query, **variables)
        (payload,) = data.values()
        assert payload["errors"] == [], payload["errors"]
        result: dict[str, Any] = payload
        return result

    def fails(self, query: str, code: str, **variables: Any) -> dict[str, Any]:
        """A mutation's payload, asserting its single error has `code`."""
        data = self.data(query, **variables)
        (payload,) = data.values()
        assert [error["code"] for error in payload["errors"]] == [code], payload["errors"]
        result: dict[str, Any] = payload
        return result


def error_codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors", [])]


@contextlib.contextmanager
def no_change(count: Any) -> Iterator[None]:
    """Assert that `count()` (rows of a table, say) is the same after the block."""
    before = count()
    yield
    assert count() == before


__all__ = ["Api", "TracebackType", "User", "error_codes", "no_change"]
