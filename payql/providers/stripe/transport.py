"""The Stripe SDK's HTTP transport: libcurl (pycurl), through the SDK's own extension point (`stripe.HTTPClient`,
passed to `StripeClient(http_client=...)`); the SDK itself runs unchanged above it.

Why not the SDK's clients: every webhook re-reads its payment at Stripe, and the re-read's CPU is a good share of
the route's. Measured against the Stripe fake (a GET of a PaymentIntent through `raw_request`, the webhook's
re-fetch: `bench/stripe_transport.py`), the SDK's `HTTPXClient` cost 1.2-1.3 ms of client CPU per call, its
`RequestsClient` 1.8-1.9 ms, urllib3 (this module's transport until 2026-12-07) 0.7-0.8 ms, and libcurl, which
parses HTTP in C, 0.4 ms (bench/README.md). The SDK's own `PycurlClient` shares one curl handle between threads,
which libcurl forbids, and waits 80 s whatever the settings: this one keeps a handle per call in flight.

What the SDK's clients do, this does: TLS verified against the SDK's CA bundle (`stripe.ca_bundle_path`), no
redirects, HTTP/1.1, and every network failure raised as `stripe.APIConnectionError` (retryable), which the adapter
turns into `ProviderUnavailable`; its message names the kind of failure (libcurl's code), nothing of the request.
The deadline is `timeout_ms` for the connect and again for the whole exchange: a server that drips its answer cannot
hold a webhook thread past it. Proxies set in the environment are not used (as with urllib3), and no
`Expect: 100-continue` is sent (libcurl would wait up to a second for it before a larger POST body).

Connections are kept alive: each idle handle keeps its own, and a call takes an idle handle (or makes one), so
concurrent calls never share a handle; a handle whose call failed is closed rather than reused. Unlike urllib3 as
it was set up here (no retries), libcurl sends a request again, once, on a fresh connection when a kept one turns
out closed before any byte of the answer came back; a POST's resend is harmless because each carries payql's
idempotency key (`adapter.py`), as the SDK's own retries rely on.
"""

from __future__ import annotations

import queue
import textwrap
from collections.abc import Iterable, Mapping
from io import BytesIO
from typing import Any, NoReturn

import pycurl
import stripe
import urllib3

# libcurl's error codes by number, for the message of a failure (pycurl.E_COULDNT_CONNECT == 7, ...)
_CURL_ERRORS = {
    value: name.removeprefix("E_")
    for name, value in vars(pycurl).items()
    if name.startswith("E_") and not name.startswith(("E_MULTI_", "E_SHARE_")) and isinstance(value, int)
}


class CurlClient(stripe.HTTPClient):
    name = "pycurl"

    def __init__(self, timeout_ms: int) -> None:
        super().__init__(verify_ssl_certs=True)
        self._timeout_ms = max(1, timeout_ms)
        self._idle: queue.SimpleQueue[pycurl.Curl] = queue.SimpleQueue()

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[str, int, Mapping[str, str]]:
        body, status, answer_headers = self._send(method, url, headers, post_data)
        # The body's bytes, as the SDK's own clients hand it over (typed `str` there): the SDK decodes them.
        return body.getvalue(), status, answer_headers  # type: ignore[return-value]

    def request_stream(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[Iterable[bytes], int, Mapping[str, str]]:
        body, status, answer_headers = self._send(method, url, headers, post_data)
        body.seek(0)
        return body, status, answer_headers

    def _send(
        self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any
    ) -> tuple[BytesIO, int, urllib3.HTTPHeaderDict]:
        try:
            curl = self._idle.get_nowait()
        except queue.Empty:
            curl = pycurl.Curl()
        body, head = BytesIO(), BytesIO()
        try:
            curl.reset()  # every option back to its default; the handle's live connection stays
            verb = method.upper()
            if verb == "GET":
                curl.setopt(pycurl.HTTPGET, 1)
            else:
                curl.setopt(pycurl.CUSTOMREQUEST, verb)
                if post_data is not None:
                    curl.setopt(pycurl.POSTFIELDS, post_data)
            curl.setopt(pycurl.URL, url)
            curl.setopt(pycurl.HTTPHEADER, [*(f"{k}: {v}" for k, v in (headers or {}).items()), "Expect:"])
            curl.setopt(pycurl.WRITEDATA, body)
            curl.setopt(pycurl.HEADERFUNCTION, head.write)
            curl.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
            curl.setopt(pycurl.PROXY, "")  # not the environment's proxy
            curl.setopt(pycurl.NOSIGNAL, 1)  # timeouts without SIGALRM: calls run on worker threads
            curl.setopt(pycurl.CONNECTTIMEOUT_MS, self._timeout_ms)
            curl.setopt(pycurl.TIMEOUT_MS, self._timeout_ms)
            curl.setopt(pycurl.CAINFO, stripe.ca_bundle_path)
            curl.perform()
            status = int(curl.getinfo(pycurl.RESPONSE_CODE))
        except pycurl.error as exc:
            curl.close()
            _connection_error(exc)
        self._idle.put(curl)
        return body, status, _headers(head.getvalue())

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


def _headers(raw: bytes) -> urllib3.HTTPHeaderDict:
    """The last answer's headers (after any interim `100 Continue`), looked up by any case as the SDK does
    (`Request-Id`, `stripe-should-retry`), a repeated one joined with commas: urllib3's mapping, as before."""
    lines = raw.decode("latin-1").split("\r\n")  # as http.client decodes them
    start = max((i for i, line in enumerate(lines) if line.startswith("HTTP/")), default=-1)
    headers = urllib3.HTTPHeaderDict()
    for line in lines[start + 1 :]:
        name, colon, value = line.partition(":")
        if colon:
            headers.add(name.strip(), value.strip())
    return headers


def _connection_error(exc: pycurl.error) -> NoReturn:
    """As the SDK's own clients word it: Stripe's message and the kind of network error, nothing of the request
    (libcurl's own message names the host and port)."""
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else -1
    message = textwrap.fill(
        "Unexpected error communicating with Stripe. If this problem persists, let us know at support@stripe.com."
    )
    raise stripe.APIConnectionError(  # type: ignore[no-untyped-call]
        f"{message}\n\n(Network error: libcurl error {code}, {_CURL_ERRORS.get(code, 'unknown')})",
        should_retry=True,
    ) from exc
