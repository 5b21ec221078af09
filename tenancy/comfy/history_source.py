"""Where the history surfaces (`/history`, `/api/jobs`, `/tenancy/outputs/{id}`) read an owner's finished prompts:
one seam, chosen at install and held in `GuardServices.history`. `LocalHistory` is ComfyUI's own history of this
instance, indexed per tenant; with the cluster queue, `execution/cluster_history.SharedHistory` is the history
every instance shares in Redis. An owner is a tenant, or None for the operators' prompts."""

from __future__ import annotations

from typing import Any, Protocol

from ..history_index import HistoryIndex, page
from ..owners import RecentPrompts
from ..read_back import owner_in
from ..shared_history import Recorded


class HistorySource(Protocol):
    async def page(self, owner: str | None, max_items: int | None, offset: int | None) -> dict[str, Recorded]:
        """One page of the owner's history (ComfyUI's paging over its own entries), oldest first."""

    async def entry(self, owner: str | None, prompt_id: str) -> Recorded | None:
        """The owner's finished prompt, None when it is not (or no longer) in the owner's history."""

    async def entries(self, owner: str | None) -> dict[str, Recorded]:
        """All of the owner's history, oldest first."""

    async def ids(self, owner: str | None) -> list[str]:
        """The owner's prompt ids in its history, oldest first."""

    async def forget(self, owner: str | None, prompt_ids: list[str]) -> None:
        """Delete the owner's `prompt_ids` from this source (ComfyUI's own handler then deletes its local copies)."""

    async def find(self, prompt_id: str) -> tuple[str | None, Recorded] | None:
        """Any owner's finished prompt (for operators): its owner and record, None when unknown."""


def history_owner(entry: Any) -> str | None:
    """The tenant that queued a history entry's prompt (None: an operator's)."""
    prompt = entry.get("prompt") if isinstance(entry, dict) else None
    return owner_in(prompt[3]) if isinstance(prompt, (list, tuple)) and len(prompt) > 3 else None


class LocalHistory:
    """ComfyUI's history of this instance (`prompt_queue.history`), read per tenant through a `HistoryIndex`
    under the queue's lock; the guard's outcomes are this instance's."""

    def __init__(self, server, index: HistoryIndex, outcomes: RecentPrompts) -> None:
        self.server = server  # its prompt_queue is read on each call (the cluster queue replaces it at install)
        self.index = index
        self.outcomes = outcomes

    async def page(self, owner: str | None, max_items: int | None, offset: int | None) -> dict[str, Recorded]:
        queue = self.server.prompt_queue
        with queue.mutex:
            return self._recorded(queue, page(self.index.ids(owner, queue.history, history_owner), max_items, offset))

    async def entry(self, owner: str | None, prompt_id: str) -> Recorded | None:
        queue = self.server.prompt_queue
        with queue.mutex:
            if not self.index.owns(owner, prompt_id, queue.history, history_owner):
                return None
            return self._recorded(queue, [prompt_id])[prompt_id]

    async def entries(self, owner: str | None) -> dict[str, Recorded]:
        queue = self.server.prompt_queue
        with queue.mutex:
            return self._recorded(queue, self.index.ids(owner, queue.history, history_owner))

    async def ids(self, owner: str | None) -> list[str]:
        queue = self.server.prompt_queue
        with queue.mutex:
            return self.index.ids(owner, queue.history, history_owner)

    async def forget(self, owner: str | None, prompt_ids: list[str]) -> None:
        return None  # ComfyUI's POST /history handler deletes them from this very history

    async def find(self, prompt_id: str) -> tuple[str | None, Recorded] | None:
        queue = self.server.prompt_queue
        with queue.mutex:
            entry = queue.history.get(prompt_id)
            return None if entry is None else (history_owner(entry), self._recorded(queue, [prompt_id])[prompt_id])

    def _recorded(self, queue, prompt_ids) -> dict[str, Recorded]:
        return {pid: Recorded(queue.history[pid], self.outcomes.get(pid)) for pid in prompt_ids}
