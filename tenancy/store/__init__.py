"""The store: one protocol for identity, ownership, quotas and the ledger, over SQLite or Redis.

`open_store(url)` picks the backend from the URL scheme; both pass the same contract tests.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from .protocol import Conflict, Store, StoreUnavailable


def open_store(url: str, base_dir: Path, *, other_process_changes_s: float = 0.0, timeout_s: float = 1.0) -> Store:
    """`other_process_changes_s`: see SqliteStore.identity_version (Redis caches nothing); `timeout_s`: the longest
    a call waits (a Redis round trip, another process's SQLite write lock) before it is StoreUnavailable."""
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        from .sqlite import SqliteStore

        return SqliteStore(sqlite_path(url, base_dir), other_process_changes_s=other_process_changes_s,
                           timeout_s=timeout_s)
    if scheme in ("redis", "rediss"):
        from .redis import RedisStore

        return RedisStore(url, timeout=timeout_s)
    raise ValueError(f"unknown store scheme {scheme!r}: use sqlite:///FILE or redis://HOST:PORT/DB")


def sqlite_path(url: str, base_dir: Path) -> Path:
    """sqlite:///name.db is relative to the config folder, sqlite:////abs/name.db absolute."""
    raw = url[len("sqlite:///"):]
    path = Path(raw)
    return path if path.is_absolute() else base_dir / path


__all__ = ["Conflict", "Store", "StoreUnavailable", "open_store", "sqlite_path"]
