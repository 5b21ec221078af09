"""Who did what: one JSON line per decision in a rotating file; credentials are never written.

The request path only queues the entry; a background thread redacts, serialises, writes and rotates.
"""

from __future__ import annotations

import atexit
import json
import logging
import logging.handlers
import queue
import threading
import time
from pathlib import Path
from typing import Any

SECRET_WORDS = ("password", "token", "secret", "authorization", "api_key", "cookie", "key")
_STOP = None


class AuditLog:
    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.lines: queue.SimpleQueue = queue.SimpleQueue()
        self.file = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups,
                                                         encoding="utf-8")
        self.writer = threading.Thread(target=self._write, name="tenancy-audit", daemon=True)
        self.writer.start()
        atexit.register(self.close)

    def record(self, **entry: Any) -> None:
        """Queue an entry (its values are not changed afterwards); redacted and serialised by the writer."""
        self.lines.put((round(time.time(), 3), entry))

    def flush(self) -> None:
        """Wait until everything recorded so far is on disk."""
        done = threading.Event()
        self.lines.put(done)
        done.wait(10)

    def close(self) -> None:
        if self.writer.is_alive():
            self.lines.put(_STOP)
            self.writer.join(10)

    def _write(self) -> None:
        while (item := self.lines.get()) is not _STOP:
            if isinstance(item, threading.Event):
                item.set()
                continue
            try:
                line = _line(*item)
            except (TypeError, ValueError, RecursionError):  # an entry that cannot be serialised: not the log
                logging.getLogger("tenancy").exception("[tenancy] audit entry dropped")
                continue
            self.file.emit(logging.makeLogRecord({"msg": line, "levelno": logging.INFO}))
        self.file.close()


def _line(when: float, entry: dict[str, Any]) -> str:
    entry = {"time": when, **{k: redact(k, v) for k, v in entry.items() if v is not None}}
    return json.dumps(entry, default=str, separators=(",", ":"))


def redact(key: str, value: Any) -> Any:
    if any(word in key.lower() for word in SECRET_WORDS) and key not in ("key_id", "credential"):
        return "[redacted]"
    if isinstance(value, dict):
        return {k: redact(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(key, v) for v in value]
    return value
