"""Webhook routes: `POST /webhooks/stripe` and `POST /webhooks/yookassa`.

The body is read raw (signatures are over the exact bytes) and handed to the provider's `parse_webhook`, which
verifies it; an unverified delivery is answered 400 before anything is read from it. In mock mode nothing is
verified, so every delivery is refused.
"""

from __future__ import annotations

import logging

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from payql.models.enums import ProviderName
from payql.providers.base import WebhookRejected
from payql.services import Services

logger = logging.getLogger("payql.webhooks")
MAX_BODY = 1_000_000


def webhook_route(services: Services, provider: ProviderName) -> object:
    async def receive(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_BODY:
            return JSONResponse({"error": "body too large"}, status_code=413)
        headers = {key.lower(): value for key, value in request.headers.items()}
        client_ip = request.client.host if request.client else None
        adapter = services.providers[provider]
        try:
            await anyio.to_thread.run_sync(adapter.parse_webhook, headers, body, client_ip)
        except WebhookRejected as exc:
            logger.warning("%s webhook refused from %s: %s", provider.value, client_ip, exc.message)
            return JSONResponse({"error": exc.message}, status_code=400)
        return JSONResponse({"error": "webhook processing is not available yet"}, status_code=400)

    return receive
