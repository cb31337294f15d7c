"""Webhook routes: `POST /webhooks/stripe` and `POST /webhooks/yookassa`.

The body is read raw (signatures are over the exact bytes) and handed to the provider's `parse_webhook`, which
verifies it before anything is read from it. Answers (CONTRACT.md): 200 for processed, duplicate and ignored
events; 400 for a bad or missing signature, a stale timestamp, malformed JSON, a verified body that is not shaped
like an event (or names ids no column can hold), or an untrusted sender; 500 for a failure the provider should
retry (the event stays recorded as failed) or a webhook secret that is not configured. In mock mode nothing can be
verified, so every delivery is refused with 400. A body over MAX_BODY is refused with 413 before it is read, one
not received within BODY_READ_TIMEOUT_MS with 408 (`payql.http_body`); each carries a `code`.

Refusals (400, 408, 413) are rate-limited per address: past REFUSALS, 429.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from payql import logs
from payql.http_body import BodyRefused, read_body
from payql.metrics import Metrics
from payql.models.enums import ProviderName
from payql.providers.base import ProviderError, WebhookRejected
from payql.ratelimit import RateLimiter
from payql.services import Services
from payql.services.webhooks import Outcome
from payql.workers import Pool, Workers

logger = logging.getLogger("payql.webhooks")
MAX_BODY = 1_000_000
REFUSALS = "30/minute"


def webhook_route(
    services: Services, provider: ProviderName, workers: Workers, metrics: Metrics | None = None
) -> Callable[[Request], Awaitable[Response]]:
    # Refused deliveries (a bad signature, an untrusted sender) are logged and rate-limited per address.
    refusals = RateLimiter(REFUSALS, services.settings.redis_url, namespace=f"payql-refusals-{provider.value}")

    async def refused(response: Response, client_ip: str | None) -> Response:
        if wait := await refusals.retry_after(client_ip or "-"):
            return JSONResponse(
                {"error": "too many refused deliveries"}, status_code=429, headers={"Retry-After": str(wait)}
            )
        return response

    async def receive(request: Request) -> Response:
        logs.note(provider=provider.value)
        client_ip = request.client.host if request.client else None
        try:
            body = await read_body(request, limit=MAX_BODY, timeout_ms=services.settings.body_read_timeout_ms)
        except BodyRefused as exc:
            if exc.status == 413:  # noqa: PLR2004 - the timeout (408) is logged at INFO where it is seen
                logger.warning("%s webhook refused from %s: %s", provider.value, client_ip, exc.message)
            answer = JSONResponse({"error": exc.message, "code": exc.code}, status_code=exc.status, headers=exc.headers)
            return await refused(answer, client_ip)
        headers = {key.lower(): value for key, value in request.headers.items()}

        # One hop to a worker thread: verification and processing (which waits on the provider's re-fetch) run
        # on the larger pool, like mutations.
        outcome = await workers.run(
            Pool.WEBHOOKS, _verify_and_process, services, provider, headers, body, client_ip, metrics
        )
        if isinstance(outcome, Response):
            return await refused(outcome, client_ip) if outcome.status_code == 400 else outcome  # noqa: PLR2004
        return JSONResponse({"status": outcome.value})

    return receive


def _verify_and_process(
    services: Services,
    provider: ProviderName,
    headers: dict[str, str],
    body: bytes,
    client_ip: str | None,
    metrics: Metrics | None,
) -> Response | Outcome:
    try:
        event = services.providers[provider].parse_webhook(headers, body, client_ip)
    except WebhookRejected as exc:
        logger.warning("%s webhook refused from %s: %s", provider.value, client_ip, exc.message)
        return JSONResponse({"error": exc.message}, status_code=400)
    except ProviderError as exc:
        logger.error("%s webhook cannot be verified: %s", provider.value, exc.message)  # noqa: TRY400 - setup
        return JSONResponse({"error": "webhook verification is not configured"}, status_code=500)
    except (LookupError, TypeError, ValueError, AttributeError, RecursionError) as exc:
        # Verified (signed, or from a trusted address) but not shaped like an event: a retry would not reshape it.
        logger.warning(
            "%s webhook refused from %s: malformed event (%s)", provider.value, client_ip, type(exc).__name__
        )
        return JSONResponse({"error": "malformed event"}, status_code=400)
    logs.note(event_id=logs.printable(event.dedupe_key), event_type=logs.printable(event.event_type))
    started = time.perf_counter()
    try:
        outcome = services.webhooks.receive(provider, event, body, headers, client_ip)
    except Exception:
        logs.note(outcome="failed")
        logger.exception("%s webhook %s (%s) failed", provider.value, event.dedupe_key, event.event_type)
        answer: Response | Outcome = JSONResponse({"status": "failed"}, status_code=500)
        result = "failed"
    else:
        logs.note(outcome=outcome.value)
        answer = result = outcome
    elapsed = time.perf_counter() - started
    logger.debug(
        "%s webhook %s (%s): %s in %.1f ms", provider.value, event.dedupe_key, event.event_type, result, elapsed * 1000
    )
    if metrics is not None:
        lag_from = event.created_at if answer is Outcome.PROCESSED else None  # a retry's lag is the provider's
        metrics.webhook_done(provider.value, str(result), elapsed, lag_from)
    return answer
