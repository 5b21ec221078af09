"""What every store backend provides. The guard only ever talks to this protocol."""

from __future__ import annotations

from typing import Protocol


class StoreUnavailable(RuntimeError):
    """The backend cannot be reached; the guard answers 503 store_unavailable (or lets work through
    uncharged when on_store_error is allow)."""


class Store(Protocol):
    description: str

    async def ping(self) -> None:
        """Raise StoreUnavailable when the backend does not answer."""

    async def close(self) -> None: ...
