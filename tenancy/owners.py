"""Whose each prompt and each output file is, as far as this process knows: a bounded memory in front of the
store, read on every websocket message, log line and file request, so the store is asked once per prompt."""

from __future__ import annotations

import itertools

from .store import Store

KNOWN_PROMPTS = 100_000  # prompts whose owner (or guard outcome) is kept in memory: ~15 MB at most


class RecentPrompts(dict):
    """prompt_id -> a value, for the `limit` prompts most recently remembered: a server up for months would
    otherwise keep every prompt it ever saw. The oldest tenth goes when full, so queued and running prompts stay."""

    def __init__(self, limit: int = KNOWN_PROMPTS) -> None:
        super().__init__()
        self.limit = limit

    def remember(self, prompt_id: str, value: str) -> None:
        if len(self) >= self.limit and prompt_id not in self:
            for stale in list(itertools.islice(self, max(self.limit // 10, 1))):
                del self[stale]
        self[prompt_id] = value


class Owners:
    """Tenants of prompts and output files ("" for an operator's), remembered here and asked of the store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.prompts = RecentPrompts()  # prompt_id -> tenant ("" for an admin's)
        self.outputs = RecentPrompts()  # "folder/subfolder/name" -> tenant ("" admin) of files written here

    def __contains__(self, prompt_id: str) -> bool:
        return prompt_id in self.prompts

    def get(self, prompt_id: str) -> str | None:
        """The owner remembered here, without asking the store (for ComfyUI's threads and hot paths)."""
        return self.prompts.get(prompt_id)

    def remember(self, prompt_id: str, owner: str) -> None:
        self.prompts.remember(prompt_id, owner)

    def forget(self, prompt_id: str) -> None:
        self.prompts.pop(prompt_id, None)

    async def of_prompt(self, prompt_id: str) -> str | None:
        """Tenant of a prompt ("" for an admin's), None when unknown."""
        if prompt_id in self.prompts:
            return self.prompts[prompt_id]
        owner = await self.store.prompt_owner(prompt_id)
        if owner is not None:
            self.prompts.remember(prompt_id, owner)
        return owner

    def remember_output(self, folder: str, subfolder: str, filename: str, owner: str) -> None:
        self.outputs.remember(f"{folder}/{subfolder}/{filename}", owner)

    async def of_output(self, folder: str, subfolder: str, filename: str) -> str | None:
        """Tenant of an output file ("" for an admin's), None when unknown: files written here are known at once
        (their index reaches the store through the outbox), others are asked of the store."""
        owner = self.outputs.get(f"{folder}/{subfolder}/{filename}")
        return owner if owner is not None else await self.store.output_owner(folder, subfolder, filename)
