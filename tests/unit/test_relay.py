"""The relay between instances: its frames and channel names, which prompt a tenant's bare interrupt reaches, and
the pub/sub bus against a real redis-server, through an outage of it."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
import redis

from tenancy.cluster import Held
from tenancy.relay import (
    binary_frame,
    channels,
    interrupt_command,
    interrupt_target,
    read_command,
    read_frame,
    text_frame,
)
from tenancy.store.relay_bus import RelayBus
from tests.harness.redis import RedisServer


def test_frames_carry_what_comfyui_puts_on_the_wire():
    text = read_frame(text_frame("executed", {"node": "2", "output": {"images": [{"filename": "a.png"}]}}))
    assert (text.binary, text.event, text.data) == (False, "executed", {"node": "2", "output": {
        "images": [{"filename": "a.png"}]}})
    preview = bytes([0, 0, 0, 1]) + b"\xff\xd8jpeg"
    binary = read_frame(binary_frame(1, bytearray(preview)))
    assert (binary.binary, binary.event, binary.data) == (True, 1, preview)
    for junk in (b"", b"X{}", b"T[1, 2]", b"Tnot json", b"B\x00"):
        assert read_frame(junk) is None
    with pytest.raises(TypeError):
        text_frame("executed", {"output": object()})


def test_channels_name_the_database_and_give_back_exactly_the_sid():
    zero, three = channels(0), channels(3)
    assert zero.socket("acme:abc") != three.socket("acme:abc")
    assert zero.sid_of(zero.socket("acme:a:b")) == "acme:a:b"
    assert zero.sid_of(three.socket("acme:abc")) is None
    assert zero.sid_of(zero.instance("acme:abc")) is None
    assert zero.sid_of(zero.socket("")) is None


def test_interrupt_commands_name_a_prompt():
    assert read_command(interrupt_command("p1", "comfy-1")) == ("p1", "comfy-1")
    for junk in (b"", b"[]", b'{"interrupt": ""}', b'{"interrupt": 3}', b"\xff"):
        assert read_command(junk) is None


def test_a_bare_interrupt_reaches_the_tenants_prompt_that_has_run_longest():
    held = [("gpu-1", Held("b1", "b", True, 9.0, 0.1)),
            ("gpu-2", Held("a1", "a", True, 2.0, 0.1)),
            ("gpu-3", Held("a2", "a", True, 5.0, 0.1)),
            ("gpu-1", Held("a3", "a", False, 8.0, 0.1))]  # handed out, not started: not running yet
    assert interrupt_target(held, "a") == ("gpu-3", "a2")
    assert interrupt_target(held, "c") is None
    assert interrupt_target([("gpu-1", Held("a3", "a", False, 8.0, 0.1))], "a") is None


def subscribers(url: str, channel: str) -> int:
    """How many subscriptions Redis itself holds for a channel: the bus's (un)subscribe returns once the command is
    sent, and a PUBLISH on another connection may reach Redis before it is processed."""
    with redis.Redis.from_url(url) as client:
        return client.pubsub_numsub(channel)[0][1]


async def _until(condition, what: str, timeout: float = 10.0):
    """Polls every 20 ms; the bus works in background tasks of this loop."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.02)


@pytest.mark.redis
def test_the_bus_delivers_in_order_to_subscribers_only_and_outlives_a_redis_outage(tmp_path, caplog):
    server = RedisServer(tmp_path / "redis").start()
    caplog.set_level(logging.WARNING, logger="tenancy")

    async def scenario() -> None:
        heard: list[tuple[str, bytes]] = []

        async def on_message(channel: str, frame: bytes) -> None:
            heard.append((channel, frame))

        sender = RelayBus(server.url, timeout_s=0.5, fixed=("fixed-a",), on_message=on_message)
        holder = RelayBus(server.url, timeout_s=0.5, fixed=("fixed-b",), on_message=on_message)
        tasks = [*sender.start(), *holder.start()]
        try:
            await _until(lambda: holder._pubsub is not None and sender._pubsub is not None, "both subscribed")
            await holder.subscribe("sock")
            await holder.subscribe("sock")  # a second socket with that sid: one subscription, counted
            await _until(lambda: subscribers(server.url, "sock") == 1, "Redis holding the subscription")
            for i in range(50):
                sender.publish("sock", b"%d" % i)
            sender.publish("nobody", b"dropped by Redis")
            await _until(lambda: len(heard) == 50, "fifty messages")
            assert heard == [("sock", b"%d" % i) for i in range(50)]
            assert await sender.publish_now("fixed-b", b"cmd") == 1
            assert await sender.publish_now("nobody", b"cmd") == 0
            await _until(lambda: heard[-1] == ("fixed-b", b"cmd"), "the command")
            await holder.unsubscribe("sock")
            assert await sender.publish_now("sock", b"still one") == 1
            await holder.unsubscribe("sock")
            await _until(lambda: subscribers(server.url, "sock") == 0, "Redis dropping the subscription")
            assert await sender.publish_now("sock", b"none") == 0

            server.stop()  # the outage: publishing (a plain call, it cannot wait on Redis) does not raise
            for _ in range(100):
                sender.publish("sock", b"lost")
            await holder.subscribe("later")  # wanted while Redis is down: subscribed when it is back
            await _until(lambda: sender.down and holder.down, "the outage seen")
            await _until(lambda: sender.dropped >= 100, "the frames of the outage dropped")
            server.start()  # the same port
            await _until(lambda: holder._pubsub is not None and not holder.down, "the holder back")
            await _until(lambda: subscribers(server.url, "later") == 1, "Redis holding the renewed subscription")
            # the sender drops frames for RETRY_S after a failure, then tries again: past that, one frame goes out
            await _until(lambda: time.monotonic() >= sender._retry_at, "the sender's pause over")
            heard.clear()
            sender.publish("later", b"back")
            await _until(lambda: heard, "a frame after the outage")
            assert heard == [("later", b"back")]
            assert not sender.down
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    try:
        asyncio.run(scenario())
    finally:
        server.stop()
    outages = [r for r in caplog.records if "Redis unreachable" in r.getMessage()]
    assert len(outages) == 2, [r.getMessage() for r in outages]  # once per bus, not once per frame or retry
