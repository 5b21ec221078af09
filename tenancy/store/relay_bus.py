"""The relay's Redis pub/sub (`tenancy.relay`): one publisher that never makes its caller wait, one subscriber
connection per instance, on redis.asyncio in ComfyUI's event loop.

Pub/sub fits: a message published to a channel nobody subscribes to is dropped by Redis, so no registry of
which instance holds which socket is kept (nothing to go stale when an instance dies); an instance subscribes to
a socket's channel while the socket is open. Delivery is at most once, in order per publisher.

A Redis outage never reaches the caller: `publish` only queues (a bounded queue; full, the frame is dropped);
the publisher drops what it cannot send, tries again after RETRY_S, and the subscriber reconnects and subscribes
again to every channel still wanted. The outage is logged once, and its end once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

log = logging.getLogger("tenancy")
QUEUE_MAX = 10_000  # frames waiting for the publisher (progress messages are small; previews a few kB)
BATCH = 256  # frames per pipelined round trip
RETRY_S = 1.0  # after a failure: how long frames are dropped before the next try, and the subscriber's pause
LISTEN_S = 1.0  # the subscriber looks up from its reads this often (to start over when a subscribe failed)
FAILURES = (redis.RedisError, OSError, asyncio.TimeoutError)

OnMessage = Callable[[str, bytes], Awaitable[None]]


class RelayBus:
    """`fixed`: channels subscribed for as long as the bus runs; `on_message(channel, frame)` is awaited for each
    message, in order (an exception it raises is logged, the bus goes on)."""

    def __init__(self, url: str, *, timeout_s: float, fixed: tuple[str, ...], on_message: OnMessage,
                 queue_max: int = QUEUE_MAX) -> None:
        self.client = aioredis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                              retry=Retry(NoBackoff(), 0))
        self.db = int(self.client.connection_pool.connection_kwargs.get("db") or 0)
        self.timeout_s = timeout_s
        self.fixed = fixed
        self.on_message = on_message
        self.frames: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(queue_max)
        self.wanted: dict[str, int] = {}  # channel -> sockets (or other holders) that want it
        self.dropped = 0  # frames not sent (queue full, Redis down)
        self._pubsub = None  # the live subscription, None while (re)connecting
        self._lock = asyncio.Lock()  # subscribe/unsubscribe commands, in order
        self._broken = False  # a subscribe failed: the subscriber starts over
        self._down_since: float | None = None
        self._retry_at = 0.0

    # -- publishing -------------------------------------------------------------------------------------------
    def publish(self, channel: str, frame: bytes) -> None:
        """Queue a frame; never waits, never raises (dropped when the queue is full)."""
        try:
            self.frames.put_nowait((channel, frame))
        except asyncio.QueueFull:
            self.dropped += 1

    async def publish_now(self, channel: str, frame: bytes) -> int | None:
        """Publish at once (a command someone waits on): how many instances heard it; None when Redis did not
        answer within the timeout."""
        try:
            heard = int(await asyncio.wait_for(self.client.publish(channel, frame), self.timeout_s))
        except FAILURES as exc:
            self._failed(exc)
            return None
        self._up()
        return heard

    async def _publisher(self) -> None:
        while True:
            batch = [await self.frames.get()]
            while len(batch) < BATCH and not self.frames.empty():
                batch.append(self.frames.get_nowait())
            if self._down_since is not None and time.monotonic() < self._retry_at:
                self.dropped += len(batch)
                continue
            try:
                pipe = self.client.pipeline(transaction=False)
                for channel, frame in batch:
                    pipe.publish(channel, frame)
                await asyncio.wait_for(pipe.execute(), self.timeout_s)
                self._up()
            except FAILURES as exc:
                self.dropped += len(batch)
                self._failed(exc)

    # -- subscribing ------------------------------------------------------------------------------------------
    async def subscribe(self, channel: str) -> None:
        """Want a channel (counted: subscribed once however many want it). Returns once the SUBSCRIBE is sent
        (Redis processes it before anything this connection sends next, not necessarily before what another
        connection publishes in the same instant); at once while Redis is down: the subscriber subscribes it when
        it reconnects."""
        count = self.wanted.get(channel, 0)
        self.wanted[channel] = count + 1
        if count == 0:
            await self._apply("subscribe", channel)

    async def unsubscribe(self, channel: str) -> None:
        count = self.wanted.get(channel, 0)
        if count > 1:
            self.wanted[channel] = count - 1
            return
        self.wanted.pop(channel, None)
        if count == 1:
            await self._apply("unsubscribe", channel)

    async def _apply(self, command: str, channel: str) -> None:
        """Under the lock (held by the subscriber only while it subscribes what is wanted, at most timeout_s), so a
        channel wanted while it subscribes is not missed."""
        try:
            async with self._lock:
                pubsub = self._pubsub
                if pubsub is not None and (channel in self.wanted) == (command == "subscribe"):
                    await asyncio.wait_for(getattr(pubsub, command)(channel), self.timeout_s)
        except FAILURES as exc:
            self._broken = True  # the connection's state is unknown: the subscriber starts over
            self._failed(exc)

    async def _subscriber(self) -> None:
        while True:
            pubsub = self.client.pubsub()
            try:
                await asyncio.wait_for(pubsub.subscribe(*self.fixed), self.timeout_s)
                async with self._lock:
                    if self.wanted:
                        await asyncio.wait_for(pubsub.subscribe(*self.wanted), self.timeout_s)
                    self._pubsub, self._broken = pubsub, False
                self._up()
                while not self._broken:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=LISTEN_S)
                    if message is not None and message.get("type") == "message":
                        await self._deliver(message["channel"], message["data"])
            except FAILURES as exc:
                self._failed(exc)
            finally:
                self._pubsub = None
                await _close(pubsub)
            await asyncio.sleep(RETRY_S)

    async def _deliver(self, channel, frame: bytes) -> None:
        name = channel.decode() if isinstance(channel, bytes) else str(channel)
        try:
            await self.on_message(name, frame)
        except Exception:  # one bad frame or socket must not stop the relay
            log.exception("[tenancy] relay: delivering a message of %s failed", name)

    # -- running ----------------------------------------------------------------------------------------------
    def start(self) -> list[asyncio.Task]:
        loop = asyncio.get_running_loop()
        return [loop.create_task(self._publisher(), name="tenancy-relay-publisher"),
                loop.create_task(self._subscriber(), name="tenancy-relay-subscriber")]

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def _failed(self, exc: BaseException) -> None:
        self._retry_at = time.monotonic() + RETRY_S
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.error("[tenancy] relay: Redis unreachable (%s): events for sockets on other instances, interrupts "
                      "and queue notices between instances are dropped until it is back; local delivery goes on",
                      exc or type(exc).__name__)

    def _up(self) -> None:
        if self._down_since is not None:
            log.warning("[tenancy] relay: Redis reachable again after %.1f s (%d frames dropped so far)",
                        time.monotonic() - self._down_since, self.dropped)
            self._down_since = None


async def _close(pubsub) -> None:
    try:
        close = getattr(pubsub, "aclose", None) or pubsub.close  # aclose: redis-py >= 5.0.1
        await close()
    except Exception:  # closing a broken connection: nothing left to do
        pass
