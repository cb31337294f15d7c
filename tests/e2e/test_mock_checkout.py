"""The mock hosted checkout (`/mock/checkout/{paymentId}`, payql.mockpages) through the public interface: a payment
made with GraphQL in mock mode, its checkoutUrl or confirmationUrl opened, the form posted as a browser posts it, the
redirect followed, and the payment read back with GraphQL (the `db` fixture runs `payql ledger check` after each
test)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import documents as doc
import httpx
import pytest
from conftest import TEST_SECRET, make_settings
from flows import book, intent
from servers import Server, payql
from support import Api, User

from payql.app import create_app
from payql.db import Database
from payql.migrate import upgrade
from payql.settings import Settings

RETURN_URL = "https://spa.example/paid?from=checkout"
_TOKEN = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


def checkout_path(url: str) -> str:
    """The path of a checkout link (the in-process app answers any host)."""
    parts = urlsplit(url)
    assert parts.path.startswith("/mock/checkout/"), url
    return parts.path


def form_token(page: str) -> str:
    found = _TOKEN.search(page)
    assert found is not None, page
    return found.group(1)


def submit(api: Api, path: str, **fields: str) -> httpx.Response:
    return api.request("POST", path, data=fields, headers={"Content-Type": "application/x-www-form-urlencoded"})


def redirect_query(answer: httpx.Response) -> tuple[str, dict[str, list[str]]]:
    """Where a 303 sends the browser (without its query), and its query."""
    assert answer.status_code == 303, answer.text
    parts = urlsplit(answer.headers["location"])
    return parts._replace(query="").geturl(), parse_qs(parts.query)


def package_checkout(api: Api, buyer: User, **fields: str) -> tuple[str, str]:
    created = intent(buyer, packageCode="standard", **fields)
    return created["payment"]["id"], created["checkoutUrl"]


def test_a_package_is_paid_on_the_mock_checkout_and_the_person_is_sent_back_to_the_spa(api: Api) -> None:
    # given a Stripe Checkout payment for a credit package, made in mock mode with a returnUrl
    buyer = api.user("buyer-c1")
    payment_id, url = package_checkout(api, buyer, returnUrl=RETURN_URL)

    # then its checkoutUrl is payql's own page, on PUBLIC_URL's default (http://HOST:PORT)
    assert url == f"http://127.0.0.1:8000/mock/checkout/{payment_id}"

    # when the person opens it
    page = api.request("GET", checkout_path(url))

    # then it shows the payment in accessible HTML, with the test card prefilled and no script
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert '<html lang="en">' in html
    assert html.count("<main>") == 1
    assert "<h1>Pay 100.00 CNY</h1>" in html
    assert "Credit package: Standard" in html
    assert "STRIPE (mock mode)" in html
    assert '<label for="card">' in html
    assert 'id="card"' in html
    assert 'value="4242 4242 4242 4242"' in html
    assert ":focus-visible" in html
    assert "<script" not in html
    assert "http" not in html.split("<body>")[1]  # nothing fetched from elsewhere
    assert "default-src 'none'" in page.headers["content-security-policy"]

    # when they pay with the prefilled card
    answer = submit(api, checkout_path(url), csrf_token=form_token(html), card="4242 4242 4242 4242", action="pay")

    # then they are sent back to the SPA's returnUrl, its own query kept, with the payment's id and status
    where, query = redirect_query(answer)
    assert where == "https://spa.example/paid"
    assert query == {"from": ["checkout"], "payment_id": [payment_id], "status": ["SUCCEEDED"]}

    # and the payment is paid, as GraphQL shows, with the credits granted
    paid = buyer.data(doc.PAYMENT, id=payment_id)["payment"]
    assert paid["status"] == "SUCCEEDED"
    assert paid["capturedAmount"] == {"amount": "100.00", "currency": "CNY"}
    assert buyer.data(doc.BALANCES)["balances"]["credits"] == 1100

    # and the page now shows the result, without a form
    after = api.request("GET", checkout_path(url))
    assert after.status_code == 200
    assert "Payment succeeded." in after.text
    assert "<form" not in after.text


def test_yookassa_confirmation_url_is_the_mock_checkout_too_and_a_hold_is_authorized(api: Api) -> None:
    client, master = api.user("client-c2"), api.user("master-c2", "provider")
    enroll_id = book(client, master, "1500.00", "RUB", title="Haircut <short>")
    created = intent(client, enrollId=enroll_id, provider="YOOKASSA", captureMethod="MANUAL", returnUrl=RETURN_URL)
    payment_id = created["payment"]["id"]
    assert created["confirmationUrl"] == f"http://127.0.0.1:8000/mock/checkout/{payment_id}"
    assert created["checkoutUrl"] is None

    page = api.request("GET", checkout_path(created["confirmationUrl"]))
    assert page.status_code == 200
    assert "Haircut &lt;short&gt;" in page.text  # the enroll's title, escaped
    assert "1500.00" in page.text
    assert "RUB" in page.text
    assert "YOOKASSA (mock mode)" in page.text

    answer = submit(
        api,
        checkout_path(created["confirmationUrl"]),
        csrf_token=form_token(page.text),
        card="4242424242424242",
        action="pay",
    )

    _, query = redirect_query(answer)
    assert query["status"] == ["AUTHORIZED"]
    assert client.data(doc.PAYMENT, id=payment_id)["payment"]["status"] == "AUTHORIZED"


def test_a_decline_card_leaves_the_payment_waiting_with_its_failure_code(api: Api) -> None:
    buyer = api.user("buyer-c3")
    payment_id, url = package_checkout(api, buyer, returnUrl=RETURN_URL)
    token = form_token(api.request("GET", checkout_path(url)).text)

    answer = submit(api, checkout_path(url), csrf_token=token, card="4000 0000 0000 0002", action="pay")

    _, query = redirect_query(answer)
    assert query["status"] == ["PENDING"]
    assert query["failure_code"] == ["card_declined"]
    payment = buyer.data(doc.PAYMENT, id=payment_id)["payment"]
    assert (payment["status"], payment["failureCode"]) == ("PENDING", "card_declined")
    assert buyer.data(doc.BALANCES)["balances"]["credits"] == 0

    # the page says so and lets them try another card, which pays
    again = api.request("GET", checkout_path(url))
    assert "declined (card_declined)" in again.text
    paid = submit(api, checkout_path(url), csrf_token=token, card="4242 4242 4242 4242", action="pay")
    assert redirect_query(paid)[1]["status"] == ["SUCCEEDED"]


def test_cancel_cancels_the_payment_and_frees_the_enroll(api: Api) -> None:
    client, mentor = api.user("client-c4"), api.user("mentor-c4", "provider")
    enroll_id = book(client, mentor, "30.00", "USD")
    created = intent(client, enrollId=enroll_id, provider="YOOKASSA", returnUrl=RETURN_URL)
    path = checkout_path(created["confirmationUrl"])
    token = form_token(api.request("GET", path).text)

    answer = submit(api, path, csrf_token=token, action="cancel")

    _, query = redirect_query(answer)
    assert query["status"] == ["CANCELED"]
    assert client.data(doc.PAYMENT, id=created["payment"]["id"])["payment"]["status"] == "CANCELED"
    # the enroll can be paid with a new attempt
    assert intent(client, enrollId=enroll_id, provider="YOOKASSA")["payment"]["status"] == "PENDING"


def test_a_double_submit_pays_once_and_a_paid_payment_cannot_be_cancelled(api: Api) -> None:
    buyer = api.user("buyer-c5")
    payment_id, url = package_checkout(api, buyer)  # no returnUrl: back to the page itself
    path = checkout_path(url)
    token = form_token(api.request("GET", path).text)

    first = submit(api, path, csrf_token=token, card="4242 4242 4242 4242", action="pay")
    second = submit(api, path, csrf_token=token, card="4242 4242 4242 4242", action="pay")
    cancel = submit(api, path, csrf_token=token, action="cancel")

    for answer in (first, second, cancel):
        where, query = redirect_query(answer)
        assert where == path  # no returnUrl: back to the page, on the host the browser used
        assert query == {"payment_id": [payment_id], "status": ["SUCCEEDED"]}
    assert "Payment succeeded." in api.request("GET", answer.headers["location"]).text
    assert buyer.data(doc.BALANCES)["balances"]["credits"] == 1100  # granted once
    assert len(buyer.data(doc.PAYMENTS)["payments"]["edges"]) == 1


def test_a_form_without_the_payments_token_changes_nothing(api: Api) -> None:
    buyer = api.user("buyer-c6")
    payment_id, url = package_checkout(api, buyer)
    _, other_url = package_checkout(api, api.user("buyer-c6b"))
    other_token = form_token(api.request("GET", checkout_path(other_url)).text)

    for token in ("", "0" * 64, other_token):  # missing, forged, another payment's
        answer = submit(api, checkout_path(url), csrf_token=token, card="4242 4242 4242 4242", action="pay")
        assert answer.status_code == 403
        assert "<h1>Form expired</h1>" in answer.text
    assert buyer.data(doc.PAYMENT, id=payment_id)["payment"]["status"] == "PENDING"


def test_an_unknown_payment_or_card_text_is_refused_with_a_page(api: Api) -> None:
    missing = api.request("GET", "/mock/checkout/pay_nonexistent")
    assert missing.status_code == 404
    assert "<h1>Payment not found</h1>" in missing.text
    assert submit(api, "/mock/checkout/pay_nonexistent", action="pay").status_code == 404

    buyer = api.user("buyer-c7")
    payment_id, url = package_checkout(api, buyer)
    token = form_token(api.request("GET", checkout_path(url)).text)
    answer = submit(api, checkout_path(url), csrf_token=token, card="not a card", action="pay")
    assert answer.status_code == 422
    assert "Enter a card number." in answer.text
    assert buyer.data(doc.PAYMENT, id=payment_id)["payment"]["status"] == "PENDING"


def _app_answers(settings: Settings, db: Database, path: str) -> int:
    with Api(create_app(settings, db=db), settings) as other:
        return other.request("GET", path).status_code


def test_the_route_is_absent_with_real_providers_and_in_production(api: Api, settings: Settings, db: Database) -> None:
    # a mock payment made here, then the same database served otherwise
    _, url = package_checkout(api, api.user("buyer-c8"))
    path = checkout_path(url)
    assert api.request("GET", path).status_code == 200

    keys = make_settings(
        settings.database_url,
        stripe_secret_key="sk_test_payql_fake",
        stripe_webhook_secret="whsec_payql_test",
        yookassa_shop_id="123",
        yookassa_secret_key="test_key",
    )
    assert _app_answers(keys, db, path) == 404  # no provider in mock mode: no route

    production = make_settings(settings.database_url, payql_env="production")
    assert _app_answers(production, db, path) == 404


def test_a_real_server_links_to_its_own_port_and_the_checkout_works_over_http(tmp_path: Path) -> None:
    # given `payql serve --port N` in mock mode, PUBLIC_URL unset
    database_url = f"sqlite:///{tmp_path / 'payql.db'}"
    upgrade(database_url)
    env = {"DATABASE_URL": database_url, "PAYQL_ENV": "test", "JWT_SECRET": TEST_SECRET, "LOG_LEVEL": "WARNING"}
    with Server(env, tmp_path) as server:
        buyer = server.api(make_settings(database_url)).user("buyer-c9")
        created = intent(buyer, packageCode="trial", returnUrl=RETURN_URL)
        payment_id = created["payment"]["id"]

        # then the checkoutUrl is absolute, on the port it serves
        assert created["checkoutUrl"] == f"{server.url}/mock/checkout/{payment_id}"
        with httpx.Client(timeout=30) as browser:
            page = browser.get(created["checkoutUrl"])
            assert page.status_code == 200
            answer = browser.post(
                created["checkoutUrl"],
                data={"csrf_token": form_token(page.text), "card": "4242 4242 4242 4242", "action": "pay"},
            )
        assert answer.status_code == 303
        assert parse_qs(urlsplit(answer.headers["location"]).query)["status"] == ["SUCCEEDED"]
        assert buyer.data(doc.PAYMENT, id=payment_id)["payment"]["status"] == "SUCCEEDED"

    check = payql("ledger", "check", env=env, cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "ledger check: ok" in check.stdout


@pytest.mark.parametrize("public_url", ["https://pay.example.com/", "http://10.0.0.5:9000"])
def test_public_url_is_the_base_of_the_links(database_url: str, db: Database, public_url: str) -> None:
    settings = make_settings(database_url, public_url=public_url)
    with Api(create_app(settings, db=db), settings) as api:
        created = intent(api.user("buyer-c10"), packageCode="trial")
    assert created["checkoutUrl"] == f"{public_url.rstrip('/')}/mock/checkout/{created['payment']['id']}"
