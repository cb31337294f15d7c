"""The mock hosted checkout: `/mock/checkout/{paymentId}`, payql's own stand-in for Stripe Checkout and YooKassa's
confirmation page while a provider runs in mock mode, so that an SPA can be developed end to end with no keys.

`GET` shows the payment (amount, currency, title, provider) and a form: a test card (prefilled with 4242 4242 4242
4242; the mock provider's decline cards decline it) and Cancel. `POST` applies the outcome through the same path as
the `confirm` mutation (the mock provider's confirmation, then `Lifecycle.apply`), or cancels the mock payment and
applies that, then answers `303 See Other` to the payment's `returnUrl` with `?payment_id=…&status=…` (and
`failure_code=…` after a decline); a payment without a `returnUrl` is sent back to this page, which then shows the
result.

The form carries a token bound to the payment: HMAC-SHA256 of the payment id under the app's secret (JWT_SECRET),
so that another site cannot pay or cancel by posting to it. Only a payment still waiting is paid or cancelled; a
second submit of the same form changes nothing and is sent to the same place with the payment's status. An unknown
id, or a payment made with a real provider, is a 404 page. The routes exist only when a provider runs in mock mode
and PAYQL_ENV is not production (`routes`).

Plain server-rendered HTML: no script, no CDN, nothing fetched; a `lang`, one `<main>` and headings, a `<label>`
for every field, and a visible focus ring.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from html import escape
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from payql.http_body import BodyRefused, read_body
from payql.models import CreditPackage, Enroll, Payment
from payql.money import format_minor
from payql.providers.base import ProviderError
from payql.services import Services
from payql.services.errors import DomainError, NotFound
from payql.services.lifecycle import NOT_YET

logger = logging.getLogger("payql.mockpages")

PATH = "/mock/checkout/{payment_id}"
FORM_LIMIT = 4096  # bytes of a form post: a card, a token, a button
TEST_CARD = "4242 4242 4242 4242"
# The mock provider's test cards (payql.providers.mock), shown on the page.
TEST_CARDS = (
    ("4242 4242 4242 4242", "succeeds"),
    ("4000 0000 0000 0002", "declined: card_declined"),
    ("4000 0000 0000 9995", "declined: insufficient_funds"),
    ("4000 0025 0000 3155", "asks for authentication; pay again to complete it"),
)
_CARD = re.compile(r"[0-9][0-9 -]{10,22}[0-9]")
_SECURITY = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1a1a1a; }
main { max-width: 28rem; margin: 2rem auto; padding: 1.5rem; background: #fff; border-radius: 8px; }
.mock { background: #fff3c4; padding: .5rem .75rem; border-radius: 4px; }
dl { display: grid; grid-template-columns: auto 1fr; gap: .25rem 1rem; }
dt { font-weight: 600; }
label { display: block; font-weight: 600; margin-top: 1rem; }
input { font-size: 1.1rem; padding: .5rem; width: 100%; box-sizing: border-box; }
button { font-size: 1rem; padding: .6rem 1.2rem; margin: 1rem .5rem 0 0; cursor: pointer; }
.pay { background: #0a5cd5; color: #fff; border: 0; border-radius: 4px; }
.cancel { background: #fff; color: #1a1a1a; border: 1px solid #666; border-radius: 4px; }
:focus-visible { outline: 3px solid #c2410c; outline-offset: 2px; }
.error { color: #a4001c; font-weight: 600; }
"""


def form_token(secret: str, payment_id: str) -> str:
    """The form's token for `payment_id`: HMAC-SHA256 under the app's secret."""
    return hmac.new(secret.encode(), f"payql-mock-checkout|{payment_id}".encode(), hashlib.sha256).hexdigest()


def routes(services: Services) -> list[Route]:
    """The mock checkout's routes: none in production, none when every provider has its keys."""
    if services.settings.production or not any(provider.mock for provider in services.providers.values()):
        return []
    checkout = _Checkout(services)
    return [Route(PATH, checkout.show, methods=["GET"]), Route(PATH, checkout.submit, methods=["POST"])]


class _Checkout:
    def __init__(self, services: Services) -> None:
        self._services = services
        self._payments = services.payments
        self._secret = services.settings.jwt_secret.get_secret_value()
        self._body_timeout_ms = services.settings.body_read_timeout_ms

    def _title(self, payment: Payment) -> str:
        with self._services.db.read() as session:
            if payment.enroll_id is not None:
                enroll = session.get(Enroll, payment.enroll_id)
                return enroll.title if enroll is not None else "Enroll"
            package = session.get(CreditPackage, payment.package_code) if payment.package_code else None
            return f"Credit package: {package.name}" if package is not None else "Credit package"

    async def _render(self, payment: Payment, **options: Any) -> HTMLResponse:
        title = await anyio.to_thread.run_sync(self._title, payment)
        return _page(payment, title, form_token(self._secret, payment.id), **options)

    async def show(self, request: Request) -> Response:
        try:
            payment = await anyio.to_thread.run_sync(self._payments.mock_payment, request.path_params["payment_id"])
        except NotFound:
            return _not_found()
        return await self._render(payment)

    async def submit(self, request: Request) -> Response:
        try:
            payment = await anyio.to_thread.run_sync(self._payments.mock_payment, request.path_params["payment_id"])
            body = await read_body(request, limit=FORM_LIMIT, timeout_ms=self._body_timeout_ms)
        except NotFound:
            return _not_found()
        except BodyRefused as exc:
            return _message(exc.status, "Not accepted", exc.message)
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        if not hmac.compare_digest(form.get("csrf_token", ""), form_token(self._secret, payment.id)):
            logger.info("mock checkout %s: a form without its token was refused", payment.id)
            return _message(403, "Form expired", "This form is not valid for this payment. Open the payment again.")
        card = form.get("card", "").strip()
        if form.get("action") == "pay" and not _CARD.fullmatch(card):
            return await self._render(payment, error="Enter a card number.", card=card, status=422)
        return await self._apply(request, payment, form.get("action"), card)

    async def _apply(self, request: Request, payment: Payment, action: str | None, card: str) -> Response:
        failure: str | None = None
        try:
            if action == "cancel":
                payment = await anyio.to_thread.run_sync(self._payments.cancel_on_mock_page, payment.id)
            elif action == "pay":
                result = await anyio.to_thread.run_sync(self._payments.pay_on_mock_page, payment.id, card)
                payment = result.payment
                if result.error is not None:
                    failure = getattr(result.error, "provider_code", None) or "declined"
            else:
                return _message(400, "Not accepted", "Choose Pay or Cancel.")
        except DomainError as exc:
            return _message(422, "Not accepted", exc.message)
        except ProviderError as exc:  # the mock itself did not answer (its database): try again
            logger.warning("mock checkout %s: %s", payment.id, exc.message)
            return _message(503, "Try again", "The payment could not be completed now. Try again.")
        return RedirectResponse(_back(request, payment, failure), status_code=303, headers=_SECURITY)


def _back(request: Request, payment: Payment, failure: str | None) -> str:
    """The payment's returnUrl with `payment_id`, `status` (and `failure_code`) added; without one, this page."""
    result = [("payment_id", payment.id), ("status", payment.status.value)]
    if failure is not None:
        result.append(("failure_code", failure))
    if payment.return_url is None:
        return f"{request.url.path}?{urlencode(result)}"  # relative: the host the browser used
    parts = urlsplit(payment.return_url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), *result]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _document(title: str, body: str, status: int) -> HTMLResponse:
    html = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)} · payql mock checkout</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )
    return HTMLResponse(html, status_code=status, headers=_SECURITY)


def _message(status: int, heading: str, text: str) -> HTMLResponse:
    return _document(heading, f"<h1>{escape(heading)}</h1>\n<p>{escape(text)}</p>", status)


def _not_found() -> HTMLResponse:
    return _message(404, "Payment not found", "There is no mock payment with this id.")


_OUTCOMES = {
    "SUCCEEDED": "Payment succeeded.",
    "AUTHORIZED": "Payment authorized: the money is held until it is captured.",
    "CANCELED": "Payment cancelled.",
    "FAILED": "Payment failed.",
}


def _page(
    payment: Payment, title: str, token: str, *, error: str | None = None, card: str = TEST_CARD, status: int = 200
) -> HTMLResponse:
    amount = format_minor(payment.amount_minor, payment.currency)
    details = (
        "<dl>\n"
        f"<dt>Amount</dt><dd>{escape(amount)}</dd>\n"
        f"<dt>Currency</dt><dd>{escape(payment.currency)}</dd>\n"
        f"<dt>For</dt><dd>{escape(title)}</dd>\n"
        f"<dt>Provider</dt><dd>{escape(payment.provider.value)} (mock mode)</dd>\n"
        f"<dt>Payment</dt><dd><code>{escape(payment.id)}</code></dd>\n"
        "</dl>"
    )
    parts = [
        f"<h1>Pay {escape(amount)} {escape(payment.currency)}</h1>",
        '<p class="mock">MOCK MODE: no money moves. Use a test card below.</p>',
        details,
    ]
    if payment.status not in NOT_YET:
        outcome = _OUTCOMES.get(payment.status.value, f"The payment is {payment.status.value}.")
        parts += ["<h2>Result</h2>", f'<p role="status">{escape(outcome)}</p>']
        return _document(f"Payment {payment.status.value.lower()}", "\n".join(parts), status)
    if error is None and payment.failure_code:
        error = f"The last attempt was declined ({payment.failure_code}). Try another card."
    if error is not None:
        parts.append(f'<p class="error" role="alert" id="card-error">{escape(error)}</p>')
    if payment.status.value == "REQUIRES_ACTION":
        parts.append("<p>The bank asks you to confirm this payment: pay again to complete it.</p>")
    described = ' aria-describedby="card-error"' if error is not None else ""
    parts += [
        "<h2>Card</h2>",
        '<form method="post">',
        f'<input type="hidden" name="csrf_token" value="{escape(token)}">',
        '<label for="card">Card number</label>',
        (
            f'<input id="card" name="card" value="{escape(card)}" inputmode="numeric" autocomplete="cc-number"'
            f" required{described}>"
        ),
        '<button type="submit" name="action" value="pay" class="pay">Pay</button>',
        '<button type="submit" name="action" value="cancel" class="cancel" formnovalidate>Cancel</button>',
        "</form>",
        "<h2>Test cards</h2>",
        "<ul>",
        *(f"<li><code>{escape(number)}</code>: {escape(effect)}</li>" for number, effect in TEST_CARDS),
        "</ul>",
    ]
    return _document(f"Pay {amount} {payment.currency}", "\n".join(parts), status)
