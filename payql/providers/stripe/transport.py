"""The Stripe SDK's HTTP transport: urllib3, through the SDK's own extension point (`stripe.HTTPClient`, passed to
`StripeClient(http_client=...)`); the SDK itself runs unchanged above it.

Why not the SDK's `HTTPXClient`: every webhook re-reads its payment at Stripe, and the re-read's CPU is a good share
of the route's. Measured serially against the Stripe fake (a GET of a PaymentIntent through `raw_request`, the
webhook's re-fetch: `bench/stripe_transport.py`), httpx cost 1.3-1.9x the client CPU per call of urllib3, and the
SDK's `RequestsClient` (requests over urllib3) 1.8-2.8x (bench/README.md, "First session of 2026-12-07").

What the SDK's clients do, this does: TLS verified against the SDK's CA bundle (`stripe.ca_bundle_path`), one
deadline for the connect and for each read (httpx's `timeout`), no redirects, and every network failure raised as
`stripe.APIConnectionError` (retryable), which the adapter turns into `ProviderUnavailable`. Connections are kept
alive in a pool shared by the threads (urllib3's `PoolManager` is thread-safe).
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn, cast

import stripe
import urllib3


class Urllib3Client(stripe.HTTPClient):
    name = "urllib3"

    def __init__(self, timeout_s: float, *, pool_size: int = 32) -> None:
        super().__init__(verify_ssl_certs=True)
        self._pool = urllib3.PoolManager(
            num_pools=4,
            maxsize=pool_size,  # connections kept per host; more may open under load and are closed after use
            timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s),
            retries=False,  # the SDK retries (max_network_retries), as with its own clients
            cert_reqs="CERT_REQUIRED",
            ca_certs=stripe.ca_bundle_path,
        )

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[str, int, Mapping[str, str]]:
        response = self._send(method, url, headers, post_data, preload=True)
        # The body's bytes, as the SDK's own clients hand it over (typed `str` there): the SDK decodes them.
        return cast("str", response.data), response.status, response.headers

    def request_stream(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[Iterable[bytes], int, Mapping[str, str]]:
        response = self._send(method, url, headers, post_data, preload=False)
        return response.stream(), response.status, response.headers

    def _send(
        self, method: str, url: str, headers: Mapping[str, str] | None, body: Any, *, preload: bool
    ) -> urllib3.BaseHTTPResponse:
        try:
            return self._pool.request(
                method.upper(), url, headers=dict(headers or {}), body=body, redirect=False, preload_content=preload
            )
        except urllib3.exceptions.HTTPError as exc:
            _connection_error(exc)

    def close(self) -> None:
        self._pool.clear()


def _connection_error(exc: Exception) -> NoReturn:
    """As the SDK's own clients word it: Stripe's message and the kind of network error, nothing of the request."""
    message = textwrap.fill(
        "Unexpected error communicating with Stripe. If this problem persists, let us know at support@stripe.com."
    )
    raise stripe.APIConnectionError(  # type: ignore[no-untyped-call]
        f"{message}\n\n(Network error: A {type(exc).__name__} was raised)", should_retry=True
    ) from exc
