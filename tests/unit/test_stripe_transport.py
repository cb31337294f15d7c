"""The Stripe SDK's transport (payql/providers/stripe/transport.py): network failures reach the SDK as its own
retryable `APIConnectionError`, whose message names nothing of the request, and the deadline ends a silent read."""

from __future__ import annotations

import socket
import time

import pytest
import stripe
from servers import free_port

from payql.providers.stripe.transport import Urllib3Client


def test_a_refused_connection_is_a_retryable_connection_error_that_names_no_url() -> None:
    client = Urllib3Client(1.0)
    url = f"http://127.0.0.1:{free_port()}/v1/payment_intents/pi_secret_looking"
    with pytest.raises(stripe.APIConnectionError) as raised:
        client.request("get", url, {"Authorization": "Bearer sk_test_x"})
    assert raised.value.should_retry is True
    assert "NewConnectionError" in str(raised.value) or "MaxRetryError" in str(raised.value)
    assert "pi_secret_looking" not in str(raised.value)
    assert "sk_test_x" not in str(raised.value)
    client.close()


def test_a_server_that_accepts_and_never_answers_is_cut_off_at_the_deadline() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel accepts the connection; nothing ever answers
        client = Urllib3Client(0.3)
        started = time.monotonic()
        with pytest.raises(stripe.APIConnectionError) as raised:
            client.request("get", f"http://127.0.0.1:{silent.getsockname()[1]}/v1/balance", {})
        assert time.monotonic() - started < 3
        assert raised.value.should_retry is True
        assert "ReadTimeoutError" in str(raised.value)
        client.close()
