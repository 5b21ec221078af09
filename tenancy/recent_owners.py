"""What is kept per owner (a tenant, or None for operators) for the few most recently active owners only.

A private ComfyUI keeps its node-output cache between a tenant's prompts; sharing one executor, keeping one cache
per tenant for every tenant ever seen would grow without bound. So the N owners who ran most recently keep theirs;
the owner who ran longest ago loses its own when an (N+1)th becomes active. Pure: the values are opaque."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

Value = TypeVar("Value")


class RecentOwners(Generic[Value]):
    """owner -> value for at most `limit` owners, the most recently taken last."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("at least one owner is kept")
        self.limit = limit
        self._kept: OrderedDict[str | None, Value] = OrderedDict()

    def take(self, owner: str | None, make: Callable[[], Value]) -> tuple[Value, list[Value]]:
        """The owner's value (made now if it had none), marked most recent, and the values of the owners that
        fell out of the `limit` most recent because of it."""
        if owner in self._kept:
            self._kept.move_to_end(owner)
        else:
            self._kept[owner] = make()
        dropped = []
        while len(self._kept) > self.limit:
            dropped.append(self._kept.popitem(last=False)[1])
        return self._kept[owner], dropped

    def owners(self) -> list[str | None]:
        """The owners kept, least recent first."""
        return list(self._kept)

    def clear(self) -> list[Value]:
        """Forget every owner's value (an operator freed memory); returns what was kept."""
        values = list(self._kept.values())
        self._kept.clear()
        return values
