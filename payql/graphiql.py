"""GraphiQL served by payql itself, with no network: the page `GET /graphql` shows a browser outside production,
and the files it loads from `/graphiql/static/` (vendored under payql/static/graphiql/, see SOURCES.md there).

The page loads nothing from anywhere else (its Content-Security-Policy says so too), points GraphiQL's fetcher at
`/graphql` and opens the *Headers* editor on a hint for the token. A hint still holding its `<placeholder>` is
never sent: the page's own script (payql-graphiql.js) drops it, so a query run before pasting a token runs
anonymously instead of failing on a malformed token.

The asset URLs carry a fingerprint of the file (`?v=`), so they can be cached for a year: a new file is a new URL.
They are sent gzipped to clients that accept it (compressed once per process, kept in memory: 630 kB in all).
In production there is neither the page (`GraphQLView` answers 404) nor these routes.

Subscriptions: `page(subscription_path=...)` hands GraphiQL a `subscriptionUrl` (ws:// or wss:// on the page's own
host) once a websocket route exists; graphiql.min.js carries the graphql-ws client it needs.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import html
import json
from pathlib import Path

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from payql.settings import Settings

STATIC_DIR = Path(__file__).with_name("static") / "graphiql"
STATIC_PREFIX = "/graphiql/static/"
GRAPHQL_PATH = "/graphql"

_JS = "text/javascript; charset=utf-8"
_CSS = "text/css; charset=utf-8"
# the only files served, in the order the page loads them: nothing else under STATIC_DIR is reachable
ASSETS: dict[str, str] = {
    "graphiql.min.css": _CSS,
    "react.production.min.js": _JS,
    "react-dom.production.min.js": _JS,
    "graphiql.min.js": _JS,
    "payql-graphiql.js": _JS,
}
IMMUTABLE = "public, max-age=31536000, immutable"

HEADERS_HINT = '{\n  "Authorization": "Bearer <a token from: payql token --sub USER_ID>"\n}\n'
DEFAULT_QUERY = """# payql's GraphiQL, served with no network. Public queries need no token; for the rest,
# put one in the Headers tab below (`payql token --sub USER_ID [--role provider|admin]`).
{
  packages {
    code
    credits
    price { amount currency }
  }
}
"""

# GraphiQL needs inline styles (React and CodeMirror set them) and data: URIs (its fonts); everything else is 'self'
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; font-src 'self' data:; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>payql GraphiQL</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{css}">
<style>html, body, #graphiql {{ height: 100%; margin: 0; }}</style>
</head>
<body>
<div id="graphiql">Loading GraphiQL…</div>
<script id="payql-graphiql-config" type="application/json">{config}</script>
{scripts}
</body>
</html>
"""


@functools.cache
def fingerprint(name: str) -> str:
    """The first 16 hex digits of the file's SHA-256: the version in its URL."""
    return hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:16]


def asset_url(name: str) -> str:
    return f"{STATIC_PREFIX}{name}?v={fingerprint(name)}"


@functools.cache
def page_html(subscription_path: str | None = None) -> str:
    config = {
        "url": GRAPHQL_PATH,
        "subscriptionPath": subscription_path,
        "defaultHeaders": HEADERS_HINT,
        "defaultQuery": DEFAULT_QUERY,
    }
    # inside <script>, "</" would end the element early: JSON may escape the slash
    config_json = json.dumps(config).replace("</", "<\\/")
    scripts = "\n".join(
        f'<script src="{html.escape(asset_url(name))}"></script>' for name in ASSETS if name.endswith(".js")
    )
    return _PAGE.format(css=html.escape(asset_url("graphiql.min.css")), config=config_json, scripts=scripts)


def page(subscription_path: str | None = None) -> Response:
    """The GraphiQL page; `subscription_path` is the websocket route for subscriptions, when there is one."""
    return HTMLResponse(page_html(subscription_path), headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY})


@functools.cache
def gzipped(name: str) -> bytes:
    """The file gzipped once per process (graphiql.min.js: 978 kB, 310 kB gzipped)."""
    return gzip.compress((STATIC_DIR / name).read_bytes(), compresslevel=9, mtime=0)


def _accepts_gzip(accept_encoding: str) -> bool:
    for part in accept_encoding.lower().split(","):
        coding, _, params = part.partition(";")
        if coding.strip() in {"gzip", "*"}:
            return params.replace(" ", "") not in {"q=0", "q=0.0", "q=0.00", "q=0.000"}
    return False


async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    media_type = ASSETS.get(name)
    if media_type is None:
        body = {"errors": [{"message": f"no GraphiQL file {name!r}", "extensions": {"code": "NOT_FOUND"}}]}
        return JSONResponse(body, status_code=404)
    headers = {"Cache-Control": IMMUTABLE, "Vary": "Accept-Encoding"}
    if _accepts_gzip(request.headers.get("accept-encoding", "")):
        content = await anyio.to_thread.run_sync(gzipped, name)  # the first time: up to 0.06 s of CPU, off the loop
        return Response(content, media_type=media_type, headers={**headers, "Content-Encoding": "gzip"})
    return FileResponse(STATIC_DIR / name, media_type=media_type, headers=headers)


def routes(settings: Settings) -> list[BaseRoute]:
    """The static files' route; none in production, where GraphiQL is off."""
    if settings.production:
        return []
    return [Route(STATIC_PREFIX + "{name}", asset, methods=["GET", "HEAD"])]
