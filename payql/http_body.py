"""Bounded request bodies, for `/graphql` and the webhook routes.

A body larger than its limit is refused from its `Content-Length` before a byte of it is read, and counted while it
streams when it has none (chunked), so an oversized body never grows the process past the limit (it used to be read
whole, then measured). A body that trickles in is cut off at `BODY_READ_TIMEOUT_MS`, an overall deadline: a client
sending a byte a second would otherwise hold its connection and a worker's attention forever. A client that goes
away mid-body raises Starlette's `ClientDisconnect`, which `payql.http_edge` logs at INFO.
"""

from __future__ import annotations

import asyncio
import logging
import re
from contextlib import aclosing

from starlette.requests import Request

logger = logging.getLogger("payql.http")

_SIZE = re.compile(r"[0-9]+")
# The rest of a refused body is not waited for: uvicorn closes the connection after the answer.
_CLOSE = {"Connection": "close"}


class BodyRefused(Exception):
    """Why a body was not read: an HTTP status, a message safe to show, and a code for the JSON answer."""

    def __init__(self, status: int, message: str, code: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = dict(headers or {})


def _too_large(limit: int) -> BodyRefused:
    return BodyRefused(413, f"the request is larger than {limit} bytes", "PAYLOAD_TOO_LARGE", _CLOSE)


async def read_body(request: Request, *, limit: int, timeout_ms: int) -> bytes:
    """The request's body, at most `limit` bytes, read within `timeout_ms`; else `BodyRefused` (413, 408, or 400
    for a `Content-Length` that is not a size)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not _SIZE.fullmatch(declared):
            raise BodyRefused(400, "the Content-Length header is not a size", "BAD_REQUEST", _CLOSE)
        digits = declared.lstrip("0")
        if len(digits) > len(str(limit)) or int(digits or "0") > limit:  # no int() of a 5,000-digit header
            raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_ms / 1000):  # asyncio's own: anyio's `fail_after` cost twice the calls
            async with aclosing(request.stream()) as stream:
                async for chunk in stream:
                    size += len(chunk)
                    if size > limit:
                        raise _too_large(limit)
                    chunks.append(chunk)
    except TimeoutError as exc:
        client = request.client.host if request.client else "-"
        logger.info(
            "%s %s from %s: body not received within %d ms", request.method, request.url.path, client, timeout_ms
        )
        message = f"the request body was not received within {timeout_ms} ms"
        raise BodyRefused(408, message, "REQUEST_TIMEOUT", _CLOSE) from exc
    return b"".join(chunks)
