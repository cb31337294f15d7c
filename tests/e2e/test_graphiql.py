"""GraphiQL is served by payql from its own files (payql/static/graphiql): nothing on the page or in those files
loads from another host, every file is served with its type and a year-long cache, the vendored files are the ones
SOURCES.md names, and production serves none of it. The browser side is test_graphiql_browser.py."""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import make_settings
from graphql import get_introspection_query
from support import Api

from payql import graphiql
from payql.app import create_app
from payql.db import Database

SOURCES = graphiql.STATIC_DIR / "SOURCES.md"
# a load from elsewhere: a scheme-relative or absolute http(s) URL where CSS or HTML would fetch it
CSS_REMOTE = re.compile(r"""(@import\s*(url\()?|url\()\s*["']?\s*(https?:)?//""", re.IGNORECASE)


@contextlib.contextmanager
def _api(tmp_path: Path, template: Path, *, production: bool = False) -> Iterator[Api]:
    """GraphiQL needs no database of its own: one SQLite copy, whatever TEST_POSTGRES_URL says."""
    target = tmp_path / "graphiql.db"
    shutil.copyfile(template, target)
    settings = make_settings(f"sqlite:///{target}")
    if production:
        settings = settings.model_copy(update={"payql_env": "production"})
    db = Database(settings.database_url)
    try:
        with Api(create_app(settings, db=db), settings) as api:
            yield api
    finally:
        db.dispose()


@pytest.fixture
def ide(tmp_path: Path, sqlite_template: Path) -> Iterator[Api]:
    with _api(tmp_path, sqlite_template) as api:
        yield api


class _Loads(HTMLParser):
    """Every URL the page would fetch: script src, link href, img/iframe/source src, and inline style url()s."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_style = tag == "style"
        for name, value in attrs:
            if value is not None and name in {"src", "href", "srcset", "data", "poster", "action"}:
                self.urls.append(value)
            if name == "style" and value:
                self.inline_styles.append(value)

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.inline_styles.append(data)

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False


def _page(api: Api) -> str:
    got = api.request("GET", "/graphql", headers={"Accept": "text/html"})
    assert got.status_code == 200
    assert got.headers["content-type"].startswith("text/html")
    return got.text


def test_the_page_loads_only_payqls_own_files(ide: Api) -> None:
    page = _page(ide)
    loads = _Loads()
    loads.feed(page)

    assert loads.urls, "the page loads its scripts and styles"
    own = [url for url in loads.urls if url != "data:,"]  # data:, is the empty favicon (no /favicon.ico request)
    assert all(url.startswith(graphiql.STATIC_PREFIX) for url in own), loads.urls
    assert not any(CSS_REMOTE.search(style) for style in loads.inline_styles)
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", page, re.IGNORECASE), "no host is named on the page"
    assert sorted(url.split("?")[0].removeprefix(graphiql.STATIC_PREFIX) for url in own) == sorted(graphiql.ASSETS)


def test_the_page_forbids_other_hosts_points_at_graphql_and_hints_at_a_token(ide: Api) -> None:
    got = ide.request("GET", "/graphql", headers={"Accept": "text/html"})
    policy = got.headers["content-security-policy"]
    config = re.search(
        r'<script id="payql-graphiql-config" type="application/json">(.*?)</script>', got.text, re.DOTALL
    )

    assert "default-src 'self'" in policy
    assert "script-src 'self';" in policy
    assert "http" not in policy
    assert config is not None
    assert '"url": "/graphql"' in config.group(1)
    assert "Authorization" in config.group(1)
    assert "Bearer <a token from: payql token --sub USER_ID>" in config.group(1)


@pytest.mark.parametrize("name", sorted(graphiql.ASSETS))
@pytest.mark.parametrize("encoding", ["gzip, deflate", "identity"])
def test_each_file_is_served_with_its_type_and_a_long_cache(ide: Api, name: str, encoding: str) -> None:
    got = ide.request("GET", graphiql.asset_url(name), headers={"Accept-Encoding": encoding})

    assert got.status_code == 200
    assert got.headers["content-type"] == graphiql.ASSETS[name]
    assert got.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.content == (graphiql.STATIC_DIR / name).read_bytes()
    assert got.headers.get("content-encoding") == ("gzip" if encoding.startswith("gzip") else None)
    assert got.headers["vary"] == "Accept-Encoding"
    assert graphiql.fingerprint(name) == hashlib.sha256(got.content).hexdigest()[:16]


def test_the_query_the_page_opens_with_runs(ide: Api) -> None:
    got = ide.graphql(graphiql.DEFAULT_QUERY)

    assert "errors" not in got
    assert got["data"]["packages"]


@pytest.mark.parametrize("descriptions", [True, False])
def test_graphiqls_introspection_query_is_within_the_limits(ide: Api, descriptions: bool) -> None:
    # GraphiQL reads the schema with this query (fragments over __Type, nested ofType): it must not be refused by
    # the cost or depth limits, or the docs and autocompletion stay empty outside production
    query = get_introspection_query(descriptions=descriptions, input_value_deprecation=True)
    got = ide.graphql(query)

    assert "errors" not in got, got.get("errors")
    assert "CreditPackage" in {named["name"] for named in got["data"]["__schema"]["types"]}


def test_the_stylesheet_loads_no_font_or_image_from_elsewhere(ide: Api) -> None:
    css = ide.request("GET", graphiql.asset_url("graphiql.min.css")).text

    assert not CSS_REMOTE.search(css)
    assert "url(data:font/woff2;base64," in css  # its fonts are inline


def test_the_scripts_fetch_nothing_from_a_fixed_host(ide: Api) -> None:
    # The bundles name hosts in comments, links and XML namespaces; what matters is that none is loaded, which the
    # browser test checks with every other host unreachable. Here: no script or stylesheet is injected from one.
    for name in graphiql.ASSETS:
        if not name.endswith(".js"):
            continue
        text = (graphiql.STATIC_DIR / name).read_text()
        assert not re.search(r"""(src|href)\s*=\s*["'](https?:)?//""", text), name
        assert not re.search(r"""(fetch|importScripts|import)\(\s*["'](https?:)?//""", text), name


@pytest.mark.parametrize("path", ["SOURCES.md", "LICENSE.react", "..%2Fgraphiql.py", "nothing.js"])
def test_only_the_listed_files_are_served(ide: Api, path: str) -> None:
    got = ide.request("GET", graphiql.STATIC_PREFIX + path)

    assert got.status_code == 404
    assert len(got.content) < 200, "an error, not a file"


def test_the_vendored_files_are_the_ones_sources_md_records() -> None:
    sources = SOURCES.read_text()
    rows = dict(re.findall(r"^\| `([^`]+)` \|.*\| `([0-9a-f]{64})` \|$", sources, re.MULTILINE))
    vendored = {name for name in graphiql.ASSETS if name != "payql-graphiql.js"}
    licences = {path.name for path in graphiql.STATIC_DIR.glob("LICENSE.*")}

    assert set(rows) == vendored | licences
    for name, digest in rows.items():
        assert hashlib.sha256((graphiql.STATIC_DIR / name).read_bytes()).hexdigest() == digest, name
    for licence in licences:
        assert (graphiql.STATIC_DIR / licence).read_text().startswith("MIT License")


def test_production_serves_neither_the_page_nor_its_files(tmp_path: Path, sqlite_template: Path) -> None:
    with _api(tmp_path, sqlite_template, production=True) as api:
        page = api.request("GET", "/graphql", headers={"Accept": "text/html"})
        script = api.request("GET", graphiql.asset_url("graphiql.min.js"))

    assert page.status_code == 404
    assert script.status_code == 404
