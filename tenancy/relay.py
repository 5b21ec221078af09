"""What travels between the instances of a cluster besides the queue: execution events for a socket connected
elsewhere, interrupts for the instance running a prompt, and notices that the queue changed.

With the cluster queue a prompt accepted by one instance may run on another, whose ComfyUI sends the prompt's
events to its socket (sid), connected to the first. The running instance's guard routes each message to its
owner as ever (`comfy/execution/messages.py`); what ComfyUI then writes for a sid not connected there is
published on that sid's channel, and the instance holding the socket (subscribed to the channel while the socket
is open) writes it to exactly that socket. A frame is what ComfyUI puts on the wire: a text message's JSON, or a
binary message's event number and bytes (previews are rendered where the prompt runs).

Channels are Redis pub/sub channels, which are not scoped by database: their names carry the database number,
so two deployments on one Redis server do not hear each other.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .cluster import Held

TEXT, BINARY, OPENED = b"T", b"B", b"O"


@dataclass(frozen=True)
class Channels:
    """The relay's channel names for one Redis database."""

    base: str  # tn:relay:<db>:

    def socket(self, sid: str) -> str:
        """A socket's: the messages ComfyUI addressed to it on other instances."""
        return f"{self.base}ws:{sid}"

    def instance(self, name: str) -> str:
        """An instance's commands (interrupt a prompt it runs)."""
        return f"{self.base}inst:{name}"

    @property
    def queue(self) -> str:
        """Every instance's: the cluster's queue changed."""
        return f"{self.base}queue"

    def sid_of(self, channel: str) -> str | None:
        prefix = f"{self.base}ws:"
        return channel[len(prefix):] if channel.startswith(prefix) and len(channel) > len(prefix) else None


def channels(db: int) -> Channels:
    return Channels(f"tn:relay:{int(db)}:")


def text_frame(event: str, data: Any) -> bytes:
    """A text message as it travels (raises TypeError/ValueError for what JSON cannot carry, as ComfyUI would)."""
    return TEXT + json.dumps([event, data]).encode()


def binary_frame(event: int, data: bytes) -> bytes:
    """A binary message (a preview, rendered): its event number and bytes, as ComfyUI's send_bytes takes them."""
    return BINARY + struct.pack(">I", event) + bytes(data)


def opened_frame(instance: str) -> bytes:
    """A socket of the channel's client id opened on `instance`: every other instance that holds one of that id
    stops writing to it, as one ComfyUI does when a newer socket of a client id replaces the older (a page that
    reconnected through the balancer while its old socket lingers half-open elsewhere)."""
    return OPENED + instance.encode()


def opened_on(frame: bytes) -> str | None:
    """The instance of an `opened_frame`; None for any other frame."""
    return frame[1:].decode(errors="replace") if frame[:1] == OPENED else None


@dataclass(frozen=True)
class Frame:
    binary: bool
    event: Any  # str for text, int for binary
    data: Any  # the JSON value, or bytes


def read_frame(frame: bytes) -> Frame | None:
    """A frame back; None for anything else (never delivered)."""
    kind, body = frame[:1], frame[1:]
    if kind == BINARY and len(body) >= 4:
        return Frame(True, struct.unpack(">I", body[:4])[0], body[4:])
    if kind == TEXT:
        try:
            event, data = json.loads(body)
        except (ValueError, TypeError):
            return None
        return Frame(False, event, data) if isinstance(event, str) else None
    return None


def interrupt_command(prompt_id: str, by: str) -> bytes:
    return json.dumps({"interrupt": prompt_id, "by": by}).encode()


def read_command(frame: bytes) -> tuple[str, str] | None:
    """(prompt id, asking instance) of an interrupt command; None for anything else."""
    try:
        command = json.loads(frame)
    except (ValueError, TypeError, UnicodeDecodeError):
        return None
    if not isinstance(command, dict) or not isinstance(command.get("interrupt"), str) or not command["interrupt"]:
        return None
    return command["interrupt"], str(command.get("by", ""))


def interrupt_target(held: Iterable[tuple[str, Held]], tenant: str) -> tuple[str, str] | None:
    """(instance, prompt id) a tenant's interrupt without a prompt id reaches when none of its prompts runs on the
    instance asked: of its prompts held anywhere (instance, Held), one that has started, the longest held first
    (the one ComfyUI's own worker would be running); None when none of its prompts runs."""
    running = [(instance, h) for instance, h in held if h.tenant == tenant and h.started]
    if not running:
        return None
    instance, chosen = max(running, key=lambda pair: (pair[1].held_s, pair[1].prompt_id))
    return instance, chosen.prompt_id
