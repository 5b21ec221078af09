"""Each tenant's own history: the prompt ids it owns, in the server history's order, and ComfyUI's paging over them.

Pure: fed the server's history (prompt id -> entry, oldest first, as ComfyUI keeps it) and a function that reads
an entry's owner; it keeps only ids and owners, never entries, and catches up with what was added since it last
looked, so a tenant's read costs what the tenant owns and what finished since."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

Owner = Callable[[Any], "str | None"]


def page(ids: Sequence[str], max_items: int | None, offset: int | None) -> Sequence[str]:
    """ComfyUI's `get_history` paging over `ids` (oldest first): `offset` counts from the oldest; absent or
    negative with `max_items` given, the page is the newest `max_items`. As in ComfyUI, a page that starts inside
    the list holds at least one id (`max_items=0&offset=0` gives the oldest)."""
    start, stop = page_bounds(len(ids), max_items, offset)
    return ids[start:stop]


def page_bounds(count: int, max_items: int | None, offset: int | None) -> tuple[int, int]:
    """`page` as positions in a list of `count` ids, oldest first: the page is [start, stop) (empty when
    start >= stop), so a store that keeps ids in order can read just the page."""
    start = -1 if offset is None else offset
    if start < 0 and max_items is not None:
        start = count - max_items
    start = max(start, 0)
    stop = count if max_items is None else min(start + max(max_items, 1), count)
    return start, max(stop, start)


class HistoryIndex:
    """tenant (None: an operator's prompts) -> its prompt ids in history order, kept in step with one history
    mapping. Entries are only ever appended to that mapping, or deleted from it (by id, or the oldest when it is
    full), or the whole mapping is replaced (a wipe): each is caught up with lazily, on the next read."""

    def __init__(self) -> None:
        self._source: Mapping | None = None
        self._owner: dict[str, str | None] = {}
        self._own: dict[str | None, dict[str, None]] = {}

    def ids(self, tenant: str | None, history: Mapping[str, Any], owner: Owner) -> list[str]:
        """The tenant's prompt ids still in `history`, oldest first."""
        self._catch_up(history, owner)
        own = self._own.get(tenant, {})
        gone = [pid for pid in own if pid not in history]
        for pid in gone:
            del own[pid]
            self._owner.pop(pid, None)
        return list(own)

    def owns(self, tenant: str | None, prompt_id: str, history: Mapping[str, Any], owner: Owner) -> bool:
        """Whether `prompt_id` is in `history` and the tenant's."""
        self._catch_up(history, owner)
        return prompt_id in history and prompt_id in self._owner and self._owner[prompt_id] == tenant

    def _catch_up(self, history: Mapping[str, Any], owner: Owner) -> None:
        if history is not self._source:
            self._source, self._owner, self._own = history, {}, {}
        elif len(self._owner) > 2 * len(history) + 1000:  # ids deleted from history that no read has pruned
            self._prune(history)
        added = []
        for prompt_id in reversed(history):  # newest first, up to the newest one already known
            if prompt_id in self._owner:
                break
            added.append(prompt_id)
        for prompt_id in reversed(added):
            tenant = owner(history[prompt_id])
            self._owner[prompt_id] = tenant
            self._own.setdefault(tenant, {})[prompt_id] = None

    def _prune(self, history: Mapping[str, Any]) -> None:
        self._owner = {pid: tenant for pid, tenant in self._owner.items() if pid in history}
        self._own = {tenant: {pid: None for pid in ids if pid in history} for tenant, ids in self._own.items()}
