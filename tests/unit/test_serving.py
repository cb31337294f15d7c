"""`payql serve --workers N`'s listening sockets (payql/serving.py): one per worker, in one `SO_REUSEPORT` group."""

from __future__ import annotations

import asyncio
import socket
import sys

import pytest
from servers import free_port

from payql import serving

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="SO_REUSEPORT balancing is Linux's")


async def _two_servers(port: int) -> list[int]:
    """Two servers on `port` in one loop, as two workers bind it; the ports they listen on."""

    async def answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    first = await asyncio.start_server(answer, "127.0.0.1", port)
    try:
        second = await asyncio.start_server(answer, "127.0.0.1", port)
        ports = [first.sockets[0].getsockname()[1], second.sockets[0].getsockname()[1]]
        second.close()
        await second.wait_closed()
    finally:
        first.close()
        await first.wait_closed()
    return ports


def test_the_workers_loop_lets_each_worker_bind_the_same_port() -> None:
    port = free_port()
    with asyncio.Runner(loop_factory=serving.ReusePortLoop) as runner:
        assert runner.run(_two_servers(port)) == [port, port]


def test_the_standard_loop_alone_refuses_a_second_bind() -> None:
    """What the workers' loop changes: without `SO_REUSEPORT` the second bind fails (uvicorn's shared socket)."""
    port = free_port()
    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner, pytest.raises(OSError, match="in use"):
        runner.run(_two_servers(port))


def test_check_address_refuses_a_taken_port_even_by_another_group() -> None:
    """A port something listens on fails the start, another `payql serve --workers` (a SO_REUSEPORT group, which
    the new workers would otherwise join) included; a free one passes."""
    port = free_port()
    serving.check_address("127.0.0.1", port)
    with socket.socket() as plain:
        plain.bind(("127.0.0.1", port))
        plain.listen()
        with pytest.raises(OSError, match="in use"):
            serving.check_address("127.0.0.1", port)
    with socket.socket() as grouped:
        grouped.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        grouped.bind(("127.0.0.1", port))
        grouped.listen()
        with pytest.raises(OSError, match="in use"):
            serving.check_address("127.0.0.1", port)


@pytest.mark.parametrize(
    ("port", "workers", "expected"),
    [(8000, 2, True), (8000, 8, True), (8000, 1, False), (0, 2, False)],
)
def test_a_socket_per_worker_only_for_several_workers_on_a_fixed_port(port: int, workers: int, expected: bool) -> None:
    """One worker keeps uvicorn's own socket; port 0 would give each worker a port of its own."""
    assert serving.balanced(port, workers) is expected


def test_a_taken_port_is_refused_before_any_worker_starts() -> None:
    with socket.socket() as plain:
        plain.bind(("127.0.0.1", 0))
        plain.listen()
        port = plain.getsockname()[1]
        with pytest.raises(serving.CannotListen, match=f"cannot listen on 127.0.0.1:{port}"):
            serving.run("payql.cli:app_factory", host="127.0.0.1", port=port, workers=2)
