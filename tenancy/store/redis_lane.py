"""The connection that carries every Redis admission decision, spoken directly: commands go out as RESP, hiredis
parses the replies, and each caller's future is resolved by the replies that come back for its commands.

Redis answers one connection's commands in the order they were sent, so a call is: write its commands, append
one waiting entry, await it. A call on an idle connection is written at once; while replies are outstanding,
the commands of one turn of the event loop leave together in one send, and one read can carry the replies of
many callers (concurrent callers pipeline by themselves). A caller that gives up leaves its
entry in place: its replies are read and dropped, never handed to the next caller.

One watchdog timer per connection bounds every round trip by the store's timeout: when the oldest entry has
waited that long the connection is dropped and every waiting caller fails with a timeout; the next call opens
a new connection. That costs nothing per call (no deadline object, no timer per round trip).

Opening a connection takes the host, port or socket path, TLS context, credentials and database from the
redis-py client's connection pool, so URLs mean the same here as for every other call of the store.
"""

from __future__ import annotations

import asyncio
from collections import deque

import hiredis
from redis._parsers.base import BaseParser
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .protocol import StoreUnavailable

# A server that refuses writes is an outage too: out of memory under `noeviction` (OOM), a read-only replica
# (READONLY, after a failover), a failed save (MISCONF); from a script as from a plain command.
UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OutOfMemoryError, ReadOnlyError, OSError, asyncio.TimeoutError)


class _Wire(asyncio.Protocol):
    def __init__(self, description: str, timeout: float) -> None:
        self.description = description
        self.timeout = timeout
        # error replies become redis-py's exception classes (NoScriptError, ReadOnlyError, ...), as in redis-py
        self.reader = hiredis.Reader(encoding="utf-8", replyError=BaseParser.parse_error)
        self.waiting: deque[list] = deque()  # [future, replies expected, replies so far, sent at]
        self.transport: asyncio.Transport | None = None
        self.outgoing: list[bytes] = []
        self.closed: BaseException | None = None
        self.watchdog: asyncio.TimerHandle | None = None
        self.loop = asyncio.get_running_loop()

    # asyncio.Protocol ------------------------------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        try:
            while (reply := self.reader.gets()) is not False:
                entry = self.waiting[0]
                entry[2].append(reply)
                if len(entry[2]) == entry[1]:
                    self.waiting.popleft()
                    if not entry[0].done():
                        entry[0].set_result(entry[2])
        except (hiredis.ProtocolError, IndexError) as exc:  # not Redis speaking, or a reply nobody asked for
            self.drop(RedisConnectionError(f"{self.description}: {exc!r}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.drop(RedisConnectionError(f"{self.description}: connection closed"
                                       + (f" ({exc})" if exc else "")))

    # calls ------------------------------------------------------------------------------------------------
    def send(self, packed: bytes, replies: int) -> asyncio.Future:
        """Send the packed commands; the future gets their replies."""
        if self.closed is not None:
            raise self.closed
        future = self.loop.create_future()
        if self.outgoing:  # more of this turn's commands: they leave together
            self.outgoing.append(packed)
        elif self.waiting:  # replies outstanding: gather this turn's commands into one write at its end
            self.outgoing.append(packed)
            self.loop.call_soon(self._flush)
        else:  # the connection is idle: no reason to wait
            self.transport.write(packed)
        now = self.loop.time()
        self.waiting.append([future, replies, [], now])
        if self.watchdog is None:
            self.watchdog = self.loop.call_at(now + self.timeout, self._watch)
        return future

    def _flush(self) -> None:
        if self.closed is None and self.outgoing:
            self.transport.write(b"".join(self.outgoing))
        self.outgoing = []

    def _watch(self) -> None:
        self.watchdog = None
        if not self.waiting or self.closed is not None:
            return
        oldest = self.waiting[0][3]
        if self.loop.time() - oldest >= self.timeout:
            self.drop(RedisTimeoutError(f"{self.description}: no reply within {self.timeout:g} s"))
        else:
            self.watchdog = self.loop.call_at(oldest + self.timeout, self._watch)

    def drop(self, error: BaseException) -> None:
        """Close the connection; every caller still waiting fails with `error`."""
        if self.closed is None:
            self.closed = error
            if self.transport is not None:
                self.transport.abort()
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        while self.waiting:
            future = self.waiting.popleft()[0]
            if not future.done():
                future.set_exception(self.closed)


class Lane:
    """Opens the wire when needed (again after a failure) and makes calls on it."""

    def __init__(self, pool, description: str, timeout: float) -> None:
        self.pool = pool
        self.description = description
        self.timeout = timeout
        self.wire: _Wire | None = None
        self.opening: asyncio.Future | None = None

    async def close(self) -> None:
        if self.wire is not None:
            self.wire.drop(RedisConnectionError(f"{self.description}: closed"))
            self.wire = None

    async def open(self) -> _Wire:
        """A new connection to send on, when `wire` is missing or closed."""
        if self.opening is None or self.opening.done():  # callers arriving meanwhile wait for the same one
            self.opening = asyncio.ensure_future(asyncio.wait_for(self._connect(), self.timeout))
            # its failure is reported to the callers waiting; if they all gave up, nobody else needs it
            self.opening.add_done_callback(lambda done: done.cancelled() or done.exception())
        self.wire = await asyncio.shield(self.opening)
        return self.wire

    async def _connect(self) -> _Wire:
        settings = self.pool.make_connection()  # redis-py's reading of the URL: never connected itself
        loop = asyncio.get_running_loop()
        factory = lambda: _Wire(self.description, self.timeout)  # noqa: E731
        if getattr(settings, "path", None):
            _, wire = await loop.create_unix_connection(factory, settings.path)
        else:
            tls = settings.ssl_context.get() if hasattr(settings, "ssl_context") else None
            _, wire = await loop.create_connection(factory, settings.host, settings.port, ssl=tls)
        handshake = []
        if settings.password:
            handshake.append(("AUTH", *filter(None, (settings.username, settings.password))))
        if settings.db:
            handshake.append(("SELECT", settings.db))
        try:
            for reply in await wire.send(pack(handshake), len(handshake)) if handshake else ():
                if isinstance(reply, Exception):
                    raise reply
        except BaseException as exc:  # a refused password, or the wait_for above gave up
            wire.drop(RedisConnectionError(f"{self.description}: {exc!r}"))
            raise
        return wire


def pack(commands: list[tuple]) -> bytes:
    """Commands (of str and int arguments) in RESP, the wire format."""
    return b"".join(b"*%d\r\n%s" % (len(command), pack_arguments(command)) for command in commands)


def pack_arguments(arguments: tuple) -> bytes:
    """Bulk strings. Built as one str and encoded once: RESP lengths count bytes, which are characters only
    while the text is ASCII; anything else takes the byte-wise path."""
    out = []
    for argument in arguments:
        text = str(argument)
        out.append(f"${len(text)}\r\n{text}\r\n")
    packed = "".join(out)
    if packed.isascii():
        return packed.encode()
    return b"".join(b"$%d\r\n%s\r\n" % (len(data), data) for data in (str(a).encode() for a in arguments))


def failure(description: str, exc: BaseException) -> BaseException:
    """StoreUnavailable for a connection failure, a timeout or a server that refuses writes (OOM, READONLY,
    MISCONF); else exc itself."""
    if isinstance(exc, UNAVAILABLE) or (isinstance(exc, ResponseError) and str(exc).startswith("MISCONF")):
        return StoreUnavailable(f"{description}: {type(exc).__name__}: {exc}")
    return exc
