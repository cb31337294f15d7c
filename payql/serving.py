"""`payql serve --workers N` with a listening socket per worker (`SO_REUSEPORT`), so that the kernel spreads the
connections over the workers.

uvicorn's own multi-worker mode binds one socket in its parent, and every worker accepts from that one queue. When a
worker's event loop wakes to a waiting connection, asyncio accepts every connection waiting, up to the backlog, so
a burst of new keep-alive connections (a load balancer's pool, wrk's 32) lands on the worker that woke first while
the others idle. Measured here: in three runs of wrk on two workers the split was 24/8, 15/17 and 32/0, and
`make bench-replicas`' two workers gave anywhere from 1.03x to 1.63x one (bench/README.md, "Fifth session of
2026-12-06"). With a socket per worker in one `SO_REUSEPORT` group, Linux hashes each new connection to one of
them (gunicorn's `reuse_port`; uvicorn#2472 proposes the same for uvicorn).

uvicorn still supervises the workers (its `Multiprocess`: health checks, a dead worker replaced, signals): each
worker is started without a socket and binds its own on the configured host and port, as a single uvicorn process
does, through `ReusePortLoop`, the standard library's event loop whose `create_server` joins the group. The
parent first binds the address once outside the group and lets it go, so that a port taken by another program (or
by another `payql serve`, whose group the workers would silently join) fails the start with a clear error.

The price of a socket per worker: a connection the kernel has queued on a worker's socket but the worker has not
accepted yet is reset when that worker ends (a crash, a SIGHUP restart), where with one shared socket another
worker would have taken it. The client sees a reset before it has sent anything and connects again.

Where the kernel offers no `SO_REUSEPORT` balancing (not Linux) or the port is 0 (each worker would get its own),
`payql serve` keeps uvicorn's shared socket.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess


class ReusePortLoop(asyncio.SelectorEventLoop):
    """The standard library's event loop (as `loop="asyncio"`), whose servers bound on a host and port join the
    address's `SO_REUSEPORT` group."""

    async def create_server(self, *args: Any, **kwargs: Any) -> asyncio.Server:
        if kwargs.get("sock") is None:
            kwargs["reuse_port"] = True
        return await super().create_server(*args, **kwargs)


def balanced(port: int, workers: int) -> bool:
    """Whether `workers` processes should each bind their own socket on `port`."""
    return workers > 1 and port != 0 and sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")


def check_address(host: str, port: int) -> None:
    """Bind `host:port` once, outside any `SO_REUSEPORT` group, and let it go: raises `OSError` when anything
    listens there, another `payql serve --workers` included, which the workers' own sockets would otherwise join
    (Linux lets sockets of one user share a port when they all ask to)."""
    for family, kind, protocol, _, address in socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    ):
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio binds: TIME_WAIT is no obstacle
            probe.bind(address)


class CannotListen(Exception):
    """The address is taken, or cannot be bound: nothing was started."""


def run(app: str, *, host: str, port: int, workers: int, **options: Any) -> None:
    """uvicorn on the app factory `app` (an import string), as `payql serve` runs it: on the standard library's
    event loop, and with a socket per worker where `balanced` (`CannotListen` when the address is taken)."""
    if not balanced(port, workers):
        # The standard library's event loop, not uvloop (uvicorn's pick when it is installed): under load uvloop
        # reads new requests ahead of finishing started ones (MagicStack/uvloop#123), and a saturated worker's p99
        # was 8-13x its p50 against 1.4-2x on asyncio's loop, at equal or better throughput (bench/README.md).
        uvicorn.run(app, factory=True, host=host, port=port, workers=workers, loop="asyncio", **options)
        return
    try:
        check_address(host, port)
    except OSError as exc:
        raise CannotListen(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    config = uvicorn.Config(
        app, factory=True, host=host, port=port, workers=workers, loop="payql.serving:ReusePortLoop", **options
    )
    # No socket from the parent: each worker binds its own on host and port, as a single uvicorn process does.
    Multiprocess(config, sockets=None).run()  # type: ignore[arg-type]
