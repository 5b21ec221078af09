"""The relay inside ComfyUI (on with `cluster.enabled`): a prompt's events reach its socket on whichever instance
holds it, `/interrupt` reaches the instance running the prompt, and a queue change anywhere refreshes every
instance's `status` (`tenancy.relay` for the channels and frames, `tenancy.store.relay_bus` for Redis).

Where it hooks in, and why at the wire. ComfyUI sends through `server.send`, which the guard wraps to route each
message to its owner (`messages.py`); under that wrapper sits this module's, which marks the call as routed, and
under ComfyUI's own `send` sit its `send_json` and `send_bytes`, which this module wraps too. A routed message
that ComfyUI writes for a sid not connected here is published on that sid's channel as ComfyUI would have put it
on the wire: JSON, or a binary event and its bytes. Relaying at `send` would have to carry what ComfyUI passes
there, a PIL image for an unencoded preview among others; at the wire every message, however ComfyUI encodes it
now or later, is JSON or bytes, and the receiving instance hands it to ComfyUI's own `send_json`/`send_bytes` for
exactly that sid. Nothing else is relayed: a message that did not pass the guard's routing (a node calling
`send_json` itself) is not marked, and a relayed message was owner-checked where it was routed; the sid's
namespace (`<tenant>:…`, set by `surfaces/websocket.py` from the caller's identity) is the tenant's own.

Redis never holds up ComfyUI: publishing queues the frame for a background publisher (`RelayBus.publish`), and an
outage drops relayed frames (logged once) while local delivery goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import logging
import sys
from typing import TYPE_CHECKING, Any

from ...relay import (
    Channels,
    binary_frame,
    channels,
    interrupt_command,
    interrupt_target,
    opened_frame,
    opened_on,
    read_command,
    read_frame,
    text_frame,
)
from ...store.relay_bus import RelayBus

if TYPE_CHECKING:
    from ..services import GuardServices

log = logging.getLogger("tenancy")
NOTICE_S = 0.1  # a queue change is announced this long after it, once for all changes in between
# A relay round trip may take this long before it counts as an outage (its frames dropped). Longer than the store's
# timeout: nobody waits on the publisher, and an event loop starved by a busy worker for a second must not drop
# the last message of a prompt.
TIMEOUT_S = 5.0
_ROUTED = contextvars.ContextVar("tenancy_relay_routed", default=False)


class Relay:
    def __init__(self, services: GuardServices) -> None:
        self.services = services
        self.server = services.server
        self.instance = services.accounting.instance
        self.bus = RelayBus(services.settings.store, timeout_s=max(services.settings.store_timeout_s, TIMEOUT_S),
                            fixed=(), on_message=self._received)
        self.channels: Channels = channels(self.bus.db)
        self.bus.fixed = (self.channels.instance(self.instance), self.channels.queue)
        self._announce_pending = False
        self._comfy: dict[str, Any] = {}  # ComfyUI's own send_json, send_bytes, queue_updated

    # -- ComfyUI's sending ------------------------------------------------------------------------------------
    def wire(self) -> None:
        """Wrap ComfyUI's sending; before the guard wraps `send` (its routing then calls this module's `send`)."""
        server = self.server
        comfy_send = server.send
        self._comfy = {"send_json": server.send_json, "send_bytes": server.send_bytes,
                       "queue_updated": server.queue_updated}

        async def routed_send(event, data, sid=None):
            token = _ROUTED.set(True)
            try:
                await comfy_send(event, data, sid)
            finally:
                _ROUTED.reset(token)

        async def send_json(event, data, sid=None):
            if self._elsewhere(sid):
                return self._forward(sid, text_frame, event, data)
            await self._comfy["send_json"](event, data, sid)

        async def send_bytes(event, data, sid=None):
            if self._elsewhere(sid):
                return self._forward(sid, binary_frame, event, data)
            await self._comfy["send_bytes"](event, data, sid)

        def queue_updated():
            self._comfy["queue_updated"]()
            self.server.loop.call_soon_threadsafe(self._announce)  # ComfyUI's worker thread calls it too

        server.send, server.send_json, server.send_bytes = routed_send, send_json, send_bytes
        server.queue_updated = queue_updated

    def _elsewhere(self, sid) -> bool:
        return sid is not None and _ROUTED.get() and sid not in self.server.sockets

    def _forward(self, sid: str, frame_of, event, data) -> None:
        try:
            frame = frame_of(event, data)
        except (TypeError, ValueError, OverflowError) as exc:  # ComfyUI could not have sent it either
            log.error("[tenancy] relay: %s for %s cannot be relayed: %s", event, sid, exc)
            return
        self.bus.publish(self.channels.socket(str(sid)), frame)

    # -- sockets ------------------------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def socket(self, sid: str):
        """While a socket is open here, its channel's messages are delivered to it. Before ComfyUI takes it, the
        instances holding an older socket of the same client id are told (`opened_frame`): from its first message
        on, the client id's messages come here, wherever its prompts run."""
        channel = self.channels.socket(sid)
        await self.bus.subscribe(channel)
        if not self.bus.down:  # while Redis is away, no instance could relay to it either
            await self.bus.publish_now(channel, opened_frame(self.instance))
        try:
            yield
        finally:
            await self.bus.unsubscribe(channel)

    async def _received(self, channel: str, frame: bytes) -> None:
        if channel == self.channels.queue:
            return self._heard_change(frame)
        if channel == self.channels.instance(self.instance):
            return self._command(frame)
        sid = self.channels.sid_of(channel)
        if sid is None or sid not in self.server.sockets:
            return  # closed in the meantime
        opened = opened_on(frame)
        if opened is not None:
            if opened != self.instance:  # a newer socket of this client id, elsewhere: it replaces this one
                self.server.sockets.pop(sid, None)
            return
        message = read_frame(frame)
        if message is None:
            return
        send = self._comfy["send_bytes" if message.binary else "send_json"]
        await send(message.event, message.data, sid)  # exactly that socket

    # -- queue notices -----------------------------------------------------------------------------------------
    def _announce(self) -> None:
        """The queue changed here: one notice to every instance for the changes of the next NOTICE_S."""
        if self._announce_pending:
            return
        self._announce_pending = True

        def send() -> None:
            self._announce_pending = False
            self.bus.publish(self.channels.queue, self.instance.encode())

        self.server.loop.call_later(NOTICE_S, send)

    def _heard_change(self, frame: bytes) -> None:
        """Another instance's queue changed: a fresh `status` to this instance's sockets (ComfyUI's own
        queue_updated, routed by the guard to each tenant with its own queue; never announced again), sent from the
        cluster queue's refresher once it has read the queue after the change (`cluster_view.QueueListing`)."""
        if frame.decode(errors="replace") == self.instance or not self.server.sockets:
            return
        self.server.prompt_queue.listing.request(then=self._comfy["queue_updated"])  # once for a burst of notices

    # -- interrupts ----------------------------------------------------------------------------------------------
    async def interrupt(self, prompt_id: str) -> bool:
        """Interrupt a prompt wherever it runs: its instance (named by its job record) interrupts it if it still
        runs exactly that prompt. False when it runs nowhere, or its instance did not hear."""
        job = await asyncio.to_thread(self.services.accounting.cluster.queue.job, prompt_id)
        if job.get("state") != "running" or not job.get("owner"):
            return False
        return await self.interrupt_at(job["owner"], prompt_id)

    async def interrupt_running(self, tenant: str) -> bool:
        """A tenant's interrupt without a prompt id, none of its prompts running here: its running one anywhere."""
        status = await asyncio.to_thread(self.services.accounting.cluster.queue.status)
        target = interrupt_target(((i.name, held) for i in status.instances for held in i.holds), tenant)
        return target is not None and await self.interrupt_at(*target)

    async def running_elsewhere(self, job_ids: list) -> dict[str, str]:
        """Of `job_ids`, those running on another instance: job id -> that instance (for ComfyUI 0.33's job
        cancel: the others, running here, queued, ended or unknown, are ComfyUI's own to cancel here)."""
        queue, found = self.server.prompt_queue, {}
        with queue.mutex:
            here = {item[1] for item in queue.currently_running.values()}
        for job_id in {j for j in job_ids if isinstance(j, str) and j not in here}:
            record = await asyncio.to_thread(self.services.accounting.cluster.queue.job, job_id)
            if record.get("state") == "running" and record.get("owner") not in (None, "", self.instance):
                found[job_id] = record["owner"]
        return found

    async def interrupt_at(self, instance: str, prompt_id: str) -> bool:
        if instance == self.instance:
            return self.interrupt_here(prompt_id)
        heard = await self.bus.publish_now(self.channels.instance(instance), interrupt_command(prompt_id,
                                                                                               self.instance))
        log.info("[tenancy] relay: interrupt of %s sent to %s (%s)", prompt_id, instance,
                 "heard" if heard else "not heard")
        return bool(heard)

    def _command(self, frame: bytes) -> None:
        command = read_command(frame)
        if command is None:
            return
        prompt_id, by = command
        done = self.interrupt_here(prompt_id)
        log.info("[tenancy] relay: interrupt of %s asked by %s: %s", prompt_id, by,
                 "interrupted" if done else "not running here")

    def interrupt_here(self, prompt_id: str) -> bool:
        """Interrupt the prompt this instance runs if, and only if, it is exactly `prompt_id`: checked and signalled
        under the queue's lock, so the worker cannot move on to another prompt in between (and it clears the flag
        when it starts one). ComfyUI 0.33's queue does that itself (`interrupt_if_running`); 0.3.75's has no such
        method."""
        queue = self.server.prompt_queue
        if hasattr(queue, "interrupt_if_running"):
            return bool(queue.interrupt_if_running(prompt_id))
        with queue.mutex:
            if any(item[1] == prompt_id for item in queue.currently_running.values()):
                sys.modules["nodes"].interrupt_processing()
                return True
        return False

    # -- running -------------------------------------------------------------------------------------------------
    def start(self, app) -> None:
        app["tenancy.relay"] = self.bus.start()


def install(services: GuardServices) -> GuardServices:
    """With the cluster queue: the relay, part of the services (the websocket and /interrupt surfaces use it)."""
    if not services.settings.cluster.enabled or services.accounting.cluster is None:
        return services
    return dataclasses.replace(services, relay=Relay(services))
