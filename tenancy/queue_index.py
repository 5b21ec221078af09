"""Each owner's queued prompts, pending and running, kept in step with ComfyUI's queue by its own changes.

Pure: fed every change of the queue as it happens (queued, started, finished, deleted, wiped), under the queue's
own lock, so a tenant's `/queue`, `/api/jobs` and queue count cost what the tenant has queued, never the
server's whole queue. Items are ComfyUI's queue items, kept as they are: (number, prompt id, ...)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Item = Sequence[Any]


class QueueIndex:
    """owner (None: an operator's prompts) -> its pending and running queue items."""

    def __init__(self) -> None:
        self._pending: dict[str | None, dict[str, Item]] = {}
        self._running: dict[str | None, dict[str, Item]] = {}
        self._owner: dict[str, str | None] = {}  # prompt id -> owner, while queued or running
        self._runs: dict[Any, str] = {}  # the queue's running-task id -> prompt id

    def queued(self, owner: str | None, item: Item) -> None:
        prompt_id = item[1]
        self._owner[prompt_id] = owner
        self._pending.setdefault(owner, {})[prompt_id] = item

    def started(self, item: Item, run_id: Any) -> None:
        """The worker took `item` off the queue to run it."""
        prompt_id = item[1]
        owner = self._owner.get(prompt_id)
        self._pending.get(owner, {}).pop(prompt_id, None)
        self._running.setdefault(owner, {})[prompt_id] = item
        self._owner[prompt_id] = owner
        self._runs[run_id] = prompt_id

    def finished(self, run_id: Any) -> None:
        prompt_id = self._runs.pop(run_id, None)
        if prompt_id is not None:
            owner = self._owner.pop(prompt_id, None)
            self._running.get(owner, {}).pop(prompt_id, None)

    def removed(self, prompt_id: str) -> None:
        """A pending prompt was deleted from the queue."""
        if prompt_id in self._pending.get(self._owner.get(prompt_id), {}):
            del self._pending[self._owner.pop(prompt_id)][prompt_id]

    def wiped(self) -> None:
        """Every pending prompt was deleted; running ones go on."""
        for pending in self._pending.values():
            for prompt_id in pending:
                self._owner.pop(prompt_id, None)
        self._pending = {}

    def pending(self, owner: str | None) -> list[Item]:
        """The owner's pending items in the order the queue runs them (its numbers, lowest first)."""
        return sorted(self._pending.get(owner, {}).values(), key=lambda item: item[0])

    def running(self, owner: str | None) -> list[Item]:
        return list(self._running.get(owner, {}).values())

    def remaining(self, owner: str | None) -> int:
        """How many of the owner's prompts are pending or running."""
        return len(self._pending.get(owner, {})) + len(self._running.get(owner, {}))
