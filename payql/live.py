"""Live updates: every committed change of a payment or an enroll wakes that object's subscribers, in every process.

CONTRACT.md "Live updates". The lifecycle is not edited: the session notes what each flush changes and publishes it
once the transaction is committed (nothing when it rolls back). A note carries only keys, `("payment", id)` or
`("enroll", id)`: a subscriber re-reads the object under its own visibility rules (`payql.subscriptions`), so a
notification never carries data and a lost or repeated one costs at most a read.

What a change touches: a payment wakes its own key and its enroll's (an enroll shows its payment); an enroll its
own; a refund or a dispute its payment's (a payment shows them). A payment's subscribers also watch its enroll.

How a note travels (one bus per database, chosen the same way by the server and by every command):
- Redis, when REDIS_URL is set: published on the `payql_live` channel after the commit; each server process
  listens on its own connection, from its first subscription on, and reconnects.
- PostgreSQL otherwise: `pg_notify('payql_live', …)` after the commit, from a connection of its own in a thread of
  its own (`_Notifier`, one per database and process; several commits' keys go in one NOTIFY when they come faster
  than it sends). Not inside the application's transaction: a transaction that NOTIFYs holds PostgreSQL's
  database-wide notification lock through its commit, WAL flush included, so every payment commit would wait for
  every other one (`make bench-webhooks` measured 31% of backends waiting on it, at commit). Each server process
  LISTENs on its own psycopg connection, from its first subscription on (see `Live`), and reconnects; once it
  listens and after every reconnect every subscriber re-reads (a change may have been missed meanwhile). A process
  that dies between its commit and the NOTIFY (milliseconds) loses that note, as with Redis: the subscribers see the
  change with the next one, or when they resubscribe.
- In process on SQLite: the hubs of the servers of this process on that database file are woken after the commit;
  a commit by another process (a command, another worker) is seen in the file's `data_version`, polled four times
  a second, and wakes every subscription of the server to read again.

`install_bus(settings)` (`bootstrap`) chooses the bus of a database URL; `Live` is a server's hub and listener.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import logging
import queue
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Literal

from sqlalchemy import event, make_url
from sqlalchemy.orm import Session

from payql.db import normalise_url
from payql.models.dispute import Dispute
from payql.models.enroll import Enroll
from payql.models.payment import Payment, Refund
from payql.settings import Settings

logger = logging.getLogger("payql.live")

CHANNEL = "payql_live"
Kind = Literal["payment", "enroll"]
Key = tuple[str, str]  # (kind, id)
_PENDING = "payql_live_pending"  # session.info: keys flushed in this transaction
_COMMITTED = "payql_live_committed"  # session.info: keys to publish after the commit
# NOTIFY payloads must stay under 8000 bytes: ids are short, and a transaction that touches more is split.
_NOTIFY_BYTES = 7000
RECONNECT_DELAY = 1.0
SQLITE_POLL = 0.25  # seconds between two looks at an SQLite file's data_version (commits by other processes)


def _encode(keys: Iterable[Key]) -> list[str]:
    """Keys as JSON payloads `[["payment", "pay_…"], …]`, each under the NOTIFY limit."""
    payloads: list[str] = []
    chunk: list[Key] = []
    size = 2
    for key in sorted(keys):
        entry = len(key[0]) + len(key[1]) + 10
        if chunk and size + entry > _NOTIFY_BYTES:
            payloads.append(json.dumps(chunk))
            chunk, size = [], 2
        chunk.append(key)
        size += entry
    if chunk:
        payloads.append(json.dumps(chunk))
    return payloads


def decode(payload: str | bytes) -> set[Key]:
    """The keys of a payload; nothing for one that is not ours."""
    try:
        items = json.loads(payload)
    except ValueError:
        return set()
    if not isinstance(items, list):
        return set()
    return {
        (item[0], item[1])
        for item in items
        if isinstance(item, list) and len(item) == 2 and all(isinstance(part, str) for part in item)  # noqa: PLR2004
    }


_WATCHED = (Payment, Enroll, Refund, Dispute)


def keys_of(obj: object) -> list[Key]:
    """What a change of this row wakes."""
    if isinstance(obj, Payment):
        keys: list[Key] = [("payment", obj.id)]
        if obj.enroll_id is not None:
            keys.append(("enroll", obj.enroll_id))
        return keys
    if isinstance(obj, Enroll):
        return [("enroll", obj.id)]
    if isinstance(obj, Refund | Dispute) and obj.payment_id is not None:
        return [("payment", obj.payment_id)]
    return []


# -- the buses: how a committed note leaves the committing process -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bus:
    """The bus of one database URL: Redis when `redis_url` is set, else by the database's dialect."""

    redis_url: str | None = None


_BUSES: dict[str, Bus] = {}
_LOCK = threading.Lock()
_REDIS_CLIENTS: dict[str, Any] = {}
_REDIS_DOWN_UNTIL: dict[str, float] = {}
REDIS_RETRY_AFTER = 5.0  # seconds a commit skips publishing after Redis failed


def _url_key(url: Any) -> str:
    return str(url.render_as_string(hide_password=False)) if hasattr(url, "render_as_string") else str(url)


def install_bus(settings: Settings) -> None:
    """Choose the bus of SETTINGS' database for this process (the server and every command call it)."""
    with _LOCK:
        _BUSES[_url_key(normalise_url(settings.database_url))] = Bus(redis_url=settings.redis_url)


def _bus_of(session: Session) -> tuple[str, str, Bus]:
    bind = session.get_bind()
    url = _url_key(bind.engine.url)
    return url, bind.engine.dialect.name, _BUSES.get(url, Bus())


def _note(session: Session, _flush_context: object) -> None:
    """after_flush: the keys of what this flush wrote (the session still lists it as new, dirty or deleted)."""
    found = [key for obj in chain(session.new, session.deleted) for key in keys_of(obj)]
    found.extend(
        key
        for obj in session.dirty
        if isinstance(obj, _WATCHED) and session.is_modified(obj)  # a row only loaded is in `dirty` too
        for key in keys_of(obj)
    )
    if found:
        session.info.setdefault(_PENDING, set()).update(found)


def _before_commit(session: Session) -> None:
    """Flush what is left: its keys are published once the transaction commits."""
    session.flush()
    keys: set[Key] | None = session.info.pop(_PENDING, None)
    if keys:
        session.info[_COMMITTED] = keys


def _after_commit(session: Session) -> None:
    keys: set[Key] | None = session.info.pop(_COMMITTED, None)
    if not keys:
        return
    url, dialect, bus = _bus_of(session)
    if bus.redis_url is not None:
        _publish_redis(bus.redis_url, keys)
    elif dialect == "postgresql":
        _notifier(url).send(keys)
    else:
        for hub in list(_LOCAL.get(url, ())):
            hub.wake_threadsafe(keys)


class _Notifier:
    """Sends committed keys with `pg_notify` from its own autocommit connection, in its own thread: the committing
    thread only queues them. What queued while a NOTIFY was sent goes in the next one (deduplicated)."""

    def __init__(self, url: str) -> None:
        self._conninfo = url.replace("postgresql+psycopg://", "postgresql://", 1)
        self._queue: queue.SimpleQueue[set[Key] | threading.Event] = queue.SimpleQueue()
        self._connection: Any = None
        self._thread = threading.Thread(target=self._run, name="payql-live-notify", daemon=True)
        self._thread.start()

    def send(self, keys: set[Key]) -> None:
        self._queue.put(keys)

    def drain(self, timeout: float) -> bool:
        """Wait until everything queued before was sent (a command's exit); False if that took over TIMEOUT."""
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def _run(self) -> None:
        while True:
            keys: set[Key] = set()
            reached: list[threading.Event] = []
            item = self._queue.get()
            while True:
                if isinstance(item, threading.Event):
                    reached.append(item)
                else:
                    keys |= item
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if keys:
                self._notify(keys)
            for done in reached:
                done.set()

    def _notify(self, keys: set[Key]) -> None:
        import psycopg  # noqa: PLC0415

        try:
            if self._connection is None or self._connection.closed:
                self._connection = psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5)
            with self._connection.transaction():
                for payload in _encode(keys):
                    self._connection.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
        except psycopg.Error as exc:
            # The change is committed: subscribers see it with the next change or when they resubscribe.
            logger.warning("live update not sent with NOTIFY: %s", type(exc).__name__)
            with contextlib.suppress(psycopg.Error):
                if self._connection is not None:
                    self._connection.close()
            self._connection = None


_NOTIFIERS: dict[str, _Notifier] = {}


def _notifier(url: str) -> _Notifier:
    with _LOCK:
        notifier = _NOTIFIERS.get(url)
        if notifier is None:
            notifier = _NOTIFIERS[url] = _Notifier(url)
        return notifier


@atexit.register
def _drain_notifiers() -> None:
    """A command (`payql reconcile`, a job) exits right after its last commit: send what it queued first."""
    for notifier in list(_NOTIFIERS.values()):
        notifier.drain(timeout=2.0)


def _forget(session: Session, *_args: object) -> None:
    session.info.pop(_PENDING, None)
    session.info.pop(_COMMITTED, None)


def _publish_redis(redis_url: str, keys: set[Key]) -> None:
    import redis  # noqa: PLC0415 - only with REDIS_URL

    if time.monotonic() < _REDIS_DOWN_UNTIL.get(redis_url, 0.0):
        return  # it failed a moment ago: no commit waits on a Redis that is down
    try:
        with _LOCK:
            client = _REDIS_CLIENTS.get(redis_url)
            if client is None:
                client = _REDIS_CLIENTS[redis_url] = redis.Redis.from_url(
                    redis_url, socket_timeout=1, socket_connect_timeout=1
                )
        for payload in _encode(keys):
            client.publish(CHANNEL, payload)
    except redis.RedisError as exc:
        # The change is committed: subscribers see it on their next wake-up (or reconnect); never fail the caller.
        _REDIS_DOWN_UNTIL[redis_url] = time.monotonic() + REDIS_RETRY_AFTER
        logger.warning("live update not published to Redis: %s", type(exc).__name__)


event.listen(Session, "after_flush", _note)
event.listen(Session, "before_commit", _before_commit)
event.listen(Session, "after_commit", _after_commit)
event.listen(Session, "after_rollback", _forget)


# -- a server's hub and listener -------------------------------------------------------------------------------------

_LOCAL: dict[str, set[Live]] = defaultdict(set)


@dataclass(eq=False, slots=True)
class Watch:
    """One subscription's wake-up: set when any of its keys changed since it last read."""

    keys: frozenset[Key]
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class Live:
    """A server process's hub: subscriptions watch keys, the bus's listener wakes them.

    On PostgreSQL and Redis the process listens from its first subscription on, not from its start: a process that
    no client subscribes to (one that only takes webhooks, say) would otherwise receive and read every change of
    every process, each worker of each replica. Once it listens, and after every reconnect, every subscription
    reads again: a change committed while it did not listen yet is not missed. It then listens until it stops."""

    def __init__(self, settings: Settings) -> None:
        self._url = _url_key(normalise_url(settings.database_url))
        self._redis_url = settings.redis_url
        self._postgres = self._url.startswith("postgresql")
        self._watches: dict[Key, set[Watch]] = defaultdict(set)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()  # set while the listener is connected (tests wait on it)
        self._started = False
        self.connections: dict[str, int] = defaultdict(int)  # open WebSocket connections per user

    @property
    def backend(self) -> str:
        if self._redis_url is not None:
            return "redis"
        return "postgres" if self._postgres else "local"

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.listening = asyncio.Event()
        self._started = True
        if self.backend == "local":
            _LOCAL[self._url].add(self)
            self.listening.set()
            self._task = asyncio.create_task(self._watch_file(), name="payql-live-sqlite")

    def _start_listening(self) -> None:
        """On the event loop, at the first subscription: connect to the bus (and keep reconnecting)."""
        self._task = asyncio.create_task(self._listen(), name=f"payql-live-{self.backend}")

    async def stop(self) -> None:
        self._started = False
        _LOCAL[self._url].discard(self)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def watch(self, keys: Iterable[Key]) -> Watch:
        """On the event loop: wake `watch.changed` whenever one of KEYS changes from now on (and whenever the
        listener connects or reconnects)."""
        watch = Watch(frozenset(keys))
        for key in watch.keys:
            self._watches[key].add(watch)
        if self._task is None and self._started and self.backend != "local":
            self._start_listening()
        return watch

    def unwatch(self, watch: Watch) -> None:
        for key in watch.keys:
            watchers = self._watches.get(key)
            if watchers is not None:
                watchers.discard(watch)
                if not watchers:
                    del self._watches[key]

    def wake(self, keys: Iterable[Key]) -> None:
        """On the event loop: wake the subscriptions watching any of KEYS."""
        for key in keys:
            for watch in self._watches.get(key, ()):
                watch.changed.set()

    def wake_all(self) -> None:
        for watchers in self._watches.values():
            for watch in watchers:
                watch.changed.set()

    def wake_threadsafe(self, keys: Iterable[Key]) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self.wake, list(keys))

    async def _watch_file(self) -> None:
        """SQLite: a commit by another process (`payql reconcile`, a job, another worker) changes the file's
        `data_version`; no one says which rows, so every subscription reads again (and sends only a change)."""
        path = make_url(self._url).database
        if not path or path == ":memory:":
            return
        try:
            connection = sqlite3.connect(path, timeout=SQLITE_POLL, check_same_thread=False)
        except sqlite3.Error:
            return
        try:
            last: object = None
            while True:
                await asyncio.sleep(SQLITE_POLL)
                try:
                    current = connection.execute("PRAGMA data_version").fetchone()[0]
                except sqlite3.Error:
                    continue
                if last is not None and current != last:
                    self.wake_all()
                last = current
        finally:
            connection.close()

    async def _listen(self) -> None:
        listen = self._listen_redis if self.backend == "redis" else self._listen_postgres
        tried = False
        while True:
            try:
                await listen(tried)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure of the connection: reconnect
                if self.listening.is_set() or not tried:  # once an outage, not every second of it
                    reason = type(exc).__name__
                    logger.warning("live updates: lost the %s connection (%s), reconnecting", self.backend, reason)
            tried = True
            self.listening.clear()
            await asyncio.sleep(RECONNECT_DELAY)

    def _connected(self, reconnected: bool) -> None:
        self.listening.set()
        if reconnected:
            logger.info("live updates listener reconnected to %s", self.backend)
        self.wake_all()  # a change may have been committed while this process did not listen (yet, or again)

    async def _listen_postgres(self, reconnected: bool) -> None:
        import psycopg  # noqa: PLC0415

        url = self._url.replace("postgresql+psycopg://", "postgresql://", 1)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
            await connection.execute(f"LISTEN {CHANNEL}")
            self._connected(reconnected)
            async for notify in connection.notifies():
                if self._watches:  # with no subscription here, a payload wakes no one: not even decoded
                    self.wake(decode(notify.payload))

    async def _listen_redis(self, reconnected: bool) -> None:
        import redis.asyncio  # noqa: PLC0415

        client = redis.asyncio.Redis.from_url(self._redis_url or "", socket_connect_timeout=2)
        try:
            async with client.pubsub() as pubsub:
                await pubsub.subscribe(CHANNEL)
                self._connected(reconnected)
                async for message in pubsub.listen():
                    if message.get("type") == "message" and self._watches:
                        self.wake(decode(message["data"]))
        finally:
            await client.aclose()
