"""Who did what: one JSON line per decision in a rotating file; credentials are never written. Searched newest
first by the admin API.

The request path only appends the entry to a list; a background thread, waking a few times a second (never
woken by a request: waking a thread takes a system call, and the woken thread then wants the interpreter lock the
request is using), redacts, serialises, writes and rotates.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

SECRET_WORDS = ("password", "token", "secret", "authorization", "api_key", "cookie", "key")
SCAN_MAX = 500_000  # lines a search reads at most (newest first)
_STOP = None
WRITE_EVERY_S = 0.2  # the longest a recorded line waits before the writer takes it


class AuditLog:
    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.pending: deque = deque()  # entries, and Events to set once what precedes them is written
        self.wake = threading.Event()  # flush and close do not wait for the writer's next turn
        self.file = self._open()
        self.writer = threading.Thread(target=self._write, name="tenancy-audit", daemon=True)
        self.writer.start()
        atexit.register(self.close)

    def record(self, **entry: Any) -> None:
        """Queue an entry (its values are not changed afterwards); redacted and serialised by the writer."""
        self.pending.append((round(time.time(), 3), entry))

    def flush(self) -> None:
        """Wait until everything recorded so far is on disk."""
        done = threading.Event()
        self.pending.append(done)
        self.wake.set()
        done.wait(10)

    def close(self) -> None:
        if self.writer.is_alive():
            self.pending.append(_STOP)
            self.wake.set()
            self.writer.join(10)

    def _write(self) -> None:
        """Whatever has queued up is written with one call (two syscalls per batch, not five per line)."""
        stopping = False
        while not stopping:
            self.wake.wait(WRITE_EVERY_S)
            self.wake.clear()  # what was appended before a set() is taken below
            batch, waiting = [], []
            while self.pending:
                item = self.pending.popleft()
                if item is _STOP:
                    stopping = True
                elif isinstance(item, threading.Event):
                    waiting.append(item)
                else:
                    try:
                        batch.append(_line(*item) + "\n")
                    except (TypeError, ValueError, RecursionError):  # an entry that cannot be serialised
                        logging.getLogger("tenancy").exception("[tenancy] audit entry dropped")
            if batch:
                self._append("".join(batch).encode())
            for done in waiting:
                done.set()
        self.file.close()

    def _open(self):
        return open(self.path, "ab", buffering=0)  # kept open by the writer thread; O_APPEND: whole lines

    def _append(self, data: bytes) -> None:
        try:
            if self.file.closed:  # a rotation that failed half-way
                self.file = self._open()
            # the file's own size: other processes may append to the same log
            if self.max_bytes and self.backups and os.fstat(self.file.fileno()).st_size + len(data) > self.max_bytes:
                self._rotate()
            self.file.write(data)
        except OSError:
            logging.getLogger("tenancy").exception("[tenancy] audit lines not written")

    def _rotate(self) -> None:
        """audit.log -> audit.log.1 -> ... -> audit.log.<backups> (the oldest is dropped), as logging's
        RotatingFileHandler does; no rotation when max_bytes or backups is 0."""
        self.file.close()
        try:
            for n in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{n}")
                if older.exists():
                    older.replace(self.path.with_name(f"{self.path.name}.{n + 1}"))
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        finally:
            self.file = self._open()


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


# -- searching the log newest first ---------------------------------------------------------------------------

def search_audit(path: Path, filters: dict, route: str, since: float | None, limit: int) -> tuple[list[dict], int]:
    """(entries, lines scanned): entries matching every filter (exact values; `route` as a substring), newest
    first, from the live file and then its rotated backups (`audit.log.1`, `.2`, …)."""
    found, scanned = [], 0
    for file in _audit_files(path):
        for line in _lines_backwards(file):
            scanned += 1
            if scanned > SCAN_MAX:
                return found, scanned - 1
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if not isinstance(entry, dict):
                continue
            if since is not None and isinstance(entry.get("time"), (int, float)) and entry["time"] < since:
                return found, scanned  # older still from here on
            if route and route not in str(entry.get("route", "")):
                continue
            if any(str(entry.get(k, "")) != v for k, v in filters.items()):
                continue
            found.append(entry)
            if len(found) >= limit:
                return found, scanned
    return found, scanned


def _audit_files(path: Path) -> list[Path]:
    files = [path] if path.exists() else []
    index = 1
    while (rotated := path.with_name(f"{path.name}.{index}")).exists():
        files.append(rotated)
        index += 1
    return files


def _lines_backwards(path: Path, chunk: int = 1 << 16):
    with path.open("rb") as handle:
        handle.seek(0, 2)
        position = handle.tell()
        rest = b""
        while position > 0:
            step = min(chunk, position)
            position -= step
            handle.seek(position)
            block = handle.read(step) + rest
            lines = block.split(b"\n")
            rest = lines.pop(0)
            for line in reversed(lines):
                if line.strip():
                    yield line.decode("utf-8", errors="replace")
        if rest.strip():
            yield rest.decode("utf-8", errors="replace")
