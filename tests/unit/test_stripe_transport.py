"""The Stripe SDK's transport (payql/providers/stripe/transport.py, libcurl): answers reach the SDK as its own clients
hand them over (the body's bytes, the status, headers looked up by any case), nothing is followed or proxied, network
failures are the SDK's retryable `APIConnectionError` naming nothing of the request, the deadline ends a silent or
a dripping answer, and concurrent calls never share a handle while connections are kept alive."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import stripe
from servers import free_port

from payql.providers.stripe.transport import CurlClient


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Stripe's API
    seen: list[tuple[str, str, dict[str, str], bytes]] = []  # one server per test, which resets them
    ports: set[int] = set()  # the client ports that connected

    def log_message(self, *_args: object) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        Handler.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        Handler.ports.add(self.client_address[1])
        if self.path == "/moved":
            self.send_response(301)
            self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/drip":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            try:
                for _ in range(100):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.05)
            except OSError:  # the client hung up: what the test wants
                self.close_connection = True
            return
        answer = f"{self.command} {self.path}".encode()
        self.send_response(402 if self.path.startswith("/declined") else 200)
        self.send_header("Request-Id", "req_123")
        self.send_header("Stripe-Should-Retry", "false")
        self.send_header("X-Twice", "a")
        self.send_header("X-Twice", "b")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_POST = do_DELETE = _answer  # noqa: N815 - http.server's names


@pytest.fixture
def server() -> Iterator[str]:
    Handler.seen, Handler.ports = [], set()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_an_answer_reaches_the_sdk_as_its_own_clients_hand_it_over(server: str) -> None:
    client = CurlClient(2000)
    body, status, headers = client.request("get", f"{server}/v1/payment_intents/pi_1", {"Authorization": "Bearer k"})
    assert (body, status) == (b"GET /v1/payment_intents/pi_1", 200)  # bytes, which the SDK decodes
    assert headers["Request-Id"] == headers["request-id"] == "req_123"  # the SDK reads both spellings
    assert headers["stripe-should-retry"] == "false"
    assert headers["x-twice"] == "a, b"
    method, path, sent, _ = Handler.seen[-1]
    assert (method, path, sent["authorization"]) == ("GET", "/v1/payment_intents/pi_1", "Bearer k")

    _, status, _ = client.request("get", f"{server}/declined", {})
    assert status == 402  # an error answer is the SDK's to read, not a failure here
    client.close()


def test_a_post_sends_its_form_at_once_and_a_redirect_is_not_followed(server: str) -> None:
    client = CurlClient(2000)
    form = "amount=1000&currency=usd&metadata[note]=" + "x" * 2000  # past libcurl's 1 KB `Expect` threshold
    started = time.monotonic()
    body, status, _ = client.request(
        "post", f"{server}/v1/refunds", {"Content-Type": "application/x-www-form-urlencoded"}, form
    )
    assert time.monotonic() - started < 0.5  # no second's wait for a `100 Continue`
    assert (body, status) == (b"POST /v1/refunds", 200)
    method, _, sent, received = Handler.seen[-1]
    assert (method, received.decode()) == ("POST", form)
    assert "expect" not in sent

    body, status, _ = client.request("delete", f"{server}/v1/customers/cus_1", {})
    assert (body, status) == (b"DELETE /v1/customers/cus_1", 200)

    body, status, headers = client.request("get", f"{server}/moved", {})
    assert (status, headers["location"]) == (301, "/elsewhere")
    assert [path for _, path, _, _ in Handler.seen].count("/elsewhere") == 0
    client.close()


def test_a_proxy_set_in_the_environment_is_not_used(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, nowhere)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    client = CurlClient(2000)
    _, status, _ = client.request("get", f"{server}/v1/balance", {})
    assert status == 200
    client.close()


def test_concurrent_calls_never_share_a_handle_and_connections_are_kept(server: str) -> None:
    client = CurlClient(5000)

    def call(i: int) -> bytes:
        body, _, _ = client.request("get", f"{server}/v1/payment_intents/pi_{i}", {})
        return body

    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(3):
            answers = list(pool.map(call, range(64)))
            assert answers == [f"GET /v1/payment_intents/pi_{i}".encode() for i in range(64)]
    assert len(Handler.seen) == 192
    assert len(Handler.ports) <= 16  # a connection per handle, kept alive, not one per call
    client.close()


def test_a_refused_connection_is_a_retryable_connection_error_that_names_no_url() -> None:
    client = CurlClient(1000)
    url = f"http://127.0.0.1:{free_port()}/v1/payment_intents/pi_secret_looking"
    with pytest.raises(stripe.APIConnectionError) as raised:
        client.request("get", url, {"Authorization": "Bearer sk_test_x"})
    assert raised.value.should_retry is True
    assert "COULDNT_CONNECT" in str(raised.value)
    for secret in ("pi_secret_looking", "sk_test_x", "127.0.0.1"):
        assert secret not in str(raised.value)
    client.close()


def test_a_server_that_accepts_and_never_answers_is_cut_off_at_the_deadline() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel accepts the connection; nothing ever answers
        client = CurlClient(300)
        started = time.monotonic()
        with pytest.raises(stripe.APIConnectionError) as raised:
            client.request("get", f"http://127.0.0.1:{silent.getsockname()[1]}/v1/balance", {})
        assert time.monotonic() - started < 3
        assert raised.value.should_retry is True
        assert "OPERATION_TIMEDOUT" in str(raised.value)
        client.close()


def test_an_answer_that_drips_is_cut_off_at_the_deadline(server: str) -> None:
    client = CurlClient(500)  # the answer takes 5 s, a byte every 50 ms
    started = time.monotonic()
    with pytest.raises(stripe.APIConnectionError) as raised:
        client.request("get", f"{server}/drip", {})
    assert time.monotonic() - started < 2
    assert "OPERATION_TIMEDOUT" in str(raised.value)
    _, status, _ = client.request("get", f"{server}/v1/balance", {})  # the failed handle was dropped, not reused
    assert status == 200
    client.close()
