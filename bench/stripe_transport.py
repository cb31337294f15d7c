"""Client CPU per Stripe call by transport: `python bench/stripe_transport.py` (no database).

Starts the Stripe fake (`tests/fakes/stripe_api.py`, its own process), creates one PaymentIntent, then reads it
`--calls` times through `StripeClient.raw_request` (the webhook's re-fetch) with each transport in turn, twice,
interleaved: the SDK's `HTTPXClient` and `RequestsClient`, urllib3 (payql's transport until 2026-12-07, kept here
as it was, without its error mapping, which costs nothing on the happy path) and payql's `CurlClient`
(`payql/providers/stripe/transport.py`, libcurl). Prints this process's CPU per call for each.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from typing import Any, cast

import stripe
import urllib3
from run import STRIPE_KEY, StripeFakeProcess

from payql.providers.stripe.transport import CurlClient


class Urllib3Client(stripe.HTTPClient):
    """payql's transport before libcurl: urllib3's thread-safe pool, no retries, no redirects."""

    name = "urllib3"

    def __init__(self, timeout_s: float) -> None:
        super().__init__(verify_ssl_certs=True)
        self._pool = urllib3.PoolManager(
            maxsize=32,
            timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s),
            retries=False,
            cert_reqs="CERT_REQUIRED",
            ca_certs=stripe.ca_bundle_path,
        )

    def request(
        self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None, **_: Any
    ) -> tuple[str, int, Mapping[str, str]]:
        answer = self._pool.request(method.upper(), url, headers=dict(headers or {}), body=post_data, redirect=False)
        return cast("str", answer.data), answer.status, answer.headers


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    stripe.enable_telemetry = False
    fake = StripeFakeProcess()
    try:
        setup = stripe.StripeClient(STRIPE_KEY, base_addresses={"api": fake.url}, http_client=CurlClient(10_000))
        intent = setup.v1.payment_intents.create(params={"amount": 1000, "currency": "usd"})
        path = f"/v1/payment_intents/{intent.id}"
        makers = {
            "httpx (the SDK's HTTPXClient)": lambda: stripe.HTTPXClient(timeout=10, allow_sync_methods=True),
            "requests (the SDK's RequestsClient)": lambda: stripe.RequestsClient(timeout=10),
            "urllib3 (payql's transport until 2026-12-07)": lambda: Urllib3Client(10.0),
            "libcurl (payql's CurlClient)": lambda: CurlClient(10_000),
        }
        for round_ in (1, 2):
            for name, make in makers.items():
                client = stripe.StripeClient(STRIPE_KEY, base_addresses={"api": fake.url}, http_client=make())
                for _ in range(50):  # connections open, caches warm
                    client.raw_request("get", path)
                started = time.process_time()
                for _ in range(args.calls):
                    client.raw_request("get", path)
                cpu_ms = 1000 * (time.process_time() - started) / args.calls
                print(f"round {round_}: {name}: {cpu_ms:.2f} ms of CPU per call")
    finally:
        fake.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
