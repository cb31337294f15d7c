"""GraphiQL in a real browser with no network: headless Chromium (tests/browser.py, every host but 127.0.0.1
unreachable) opens `payql serve`'s /graphql, GraphiQL renders from payql's own files, the test runs a query with
the run button and reads the answer from the result pane. It fails, not skips, when chromium is missing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import browser
import httpx
import pytest
from browser import Chromium, Page
from conftest import TEST_SECRET, make_settings
from servers import Server

from payql.auth import issue_token

# the CodeMirror editors GraphiQL renders: the query editor, the result pane, and the headers editor
QUERY_EDITOR = "document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror"
RESULT_PANE = "document.querySelector('.result-window .CodeMirror').CodeMirror"
HEADERS_EDITOR = (
    "[...document.querySelectorAll('.graphiql-editor-tool .CodeMirror')].map(e => e.CodeMirror)"
    ".find(cm => cm.getValue().includes('Authorization'))"
)
RUN_BUTTON = "document.querySelector('.graphiql-execute-button')"
DOCS_BUTTON = "document.querySelector('.graphiql-sidebar [aria-label=\"Show Documentation Explorer\"]')"
DOC_EXPLORER = "document.querySelector('.graphiql-doc-explorer')"


def run(page: Page, query: str) -> dict[str, Any]:
    """Type the query into GraphiQL, press its run button and read the result pane."""
    page.evaluate(f"{QUERY_EDITOR}.setValue({json.dumps(query)}); {RESULT_PANE}.setValue(''); true")
    page.evaluate(f"{RUN_BUTTON}.click(); true")
    shown = page.wait_for(f"{RESULT_PANE}.getValue()", "the result pane to show the answer", timeout=20)
    answer: dict[str, Any] = json.loads(shown)
    return answer


def sent_with(page: Page, query: str) -> list[str | None]:
    """The Authorization header of each POST that carried this query, in order."""
    posts = [r for r in page.requests() if r["method"] == "POST" and r["url"].endswith("/graphql")]
    return [
        r["headers"].get("Authorization") for r in posts if json.loads(r.get("postData", "{}")).get("query") == query
    ]


def test_graphiql_runs_a_query_in_a_browser_with_no_network(tmp_path: Path, sqlite_template: Path) -> None:
    database = tmp_path / "payql.db"
    shutil.copyfile(sqlite_template, database)
    env = {"DATABASE_URL": f"sqlite:///{database}", "PAYQL_ENV": "test", "JWT_SECRET": TEST_SECRET}
    token = issue_token(make_settings(env["DATABASE_URL"]), "graphiql-user", ttl_seconds=600)
    packages_query = "{ packages { code credits price { amount currency } } }"
    balances_query = "{ balances { credits } }"

    with Chromium() as browser, Server(env, tmp_path) as server:  # no chromium: fail before starting payql
        expected = httpx.post(f"{server.url}/graphql", json={"query": packages_query}, timeout=10).json()
        anonymous = httpx.post(f"{server.url}/graphql", json={"query": balances_query}, timeout=10).json()
        page = browser.page()
        page.call("Page.navigate", url=f"{server.url}/graphql")
        page.wait_for(f"{RUN_BUTTON} && {HEADERS_EDITOR} && true", "GraphiQL to render", timeout=30)
        hint = page.evaluate(f"{HEADERS_EDITOR}.getValue()")
        page.evaluate(f"{DOCS_BUTTON}.click(); true")
        docs = page.wait_for(
            f"{DOC_EXPLORER}?.innerText.includes('CreditPackage') && {DOC_EXPLORER}.innerText",
            "the docs to list the schema's types (introspection)",
            timeout=20,
        )

        packages = run(page, packages_query)
        unauthenticated = run(page, balances_query)  # the hint is still in the headers editor
        page.evaluate(
            f"{HEADERS_EDITOR}.setValue({json.dumps(json.dumps({'Authorization': f'Bearer {token}'}))}); true"
        )
        balances = run(page, balances_query)
        authorizations = sent_with(page, balances_query)
        # a subscription goes over the websocket with the editor's token in connection_init: without it payql
        # would close the socket (4403); with it, a payment nobody showed this user is NOT_FOUND
        errors = page.errors()
        subscribed = run(page, 'subscription { paymentUpdated(id: "pay_nobody") { id status } }')
        # graphql-ws rejects the subscription's promise with the error list, which GraphiQL shows and leaves
        # unhandled: the one page error the subscription may add
        errors_after_subscription = page.errors()[len(errors) :]
        requests = page.requests()

    assert "query: Query" in " ".join(docs.split())
    assert packages == expected
    assert packages["data"]["packages"], "the catalogue has packages to show"
    assert json.loads(hint)["Authorization"].startswith("Bearer <")
    # the placeholder is not sent: the answer is the anonymous one, not a refused token's
    assert unauthenticated == anonymous
    assert balances == {"data": {"balances": {"credits": 0}}}
    assert authorizations == [None, f"Bearer {token}"]
    assert [error["extensions"]["code"] for error in subscribed["errors"]] == ["NOT_FOUND"]
    outside = [r["url"] for r in requests if not r["url"].startswith((server.url + "/", "data:", "about:", "blob:"))]
    assert outside == [], "the page loaded nothing from elsewhere"
    assert errors == [], "no script error, console error or failed load"
    assert set(errors_after_subscription) <= {"exception: Array(1)"}


def test_without_chromium_the_browser_test_fails_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHROMIUM", raising=False)
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    with pytest.raises(pytest.fail.Exception, match="chromium is not installed"):
        browser.chromium_path()
