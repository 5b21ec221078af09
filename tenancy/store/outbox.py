"""The store writes that follow execution (a prompt started, its outputs, its settlement), kept in order in a local
file until the store has them: they never wait for the store, never fail into ComfyUI, and survive a crash. (The
uploads of outputs to a bucket wait in one of their own, retried while the bucket is unavailable.)

Each write is appended to the file as one JSON line before anything else happens (a process killed afterwards
loses nothing: the kernel has the line); one task applies the writes in order, retrying with backoff while the
store is unavailable, and empties the file whenever all are applied. Every write is idempotent by prompt id, so
replaying a file after a crash, when some of its lines had already been applied, changes nothing twice. Only the
event loop calls `put`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path

from .protocol import StoreUnavailable

log = logging.getLogger("tenancy")
FIRST_RETRY_S = 0.1
LAST_RETRY_S = 2.0  # the longest a write waits after the store is back


class Outbox:
    def __init__(self, path: Path, apply: Callable[[dict], Awaitable[None]],
                 retry_on: tuple[type[Exception], ...] = (StoreUnavailable,), what: str = "store") -> None:
        self.path = path
        self.apply = apply
        self.retry_on = retry_on  # the failures a write waits out; any other drops it
        self.what = what  # what the writes wait for, in the log
        path.parent.mkdir(parents=True, exist_ok=True)
        self.pending: deque[dict] = deque(_read(path))
        # kept open while the process lives; O_APPEND and no buffer: each line is one write()
        self.file = open(path, "ab", buffering=0)  # noqa: SIM115
        self.error = ""  # why the oldest write is waiting, while it is
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()

    @property
    def backlog(self) -> int:
        return len(self.pending)

    def put(self, write: dict) -> None:
        self.file.write((json.dumps(write, separators=(",", ":")) + "\n").encode())
        self.pending.append(write)
        self._idle.clear()
        self._wake.set()

    async def drained(self) -> None:
        """Return once every write so far is applied."""
        while self.pending:
            await self._idle.wait()

    async def run(self) -> None:
        """Apply the writes in order, for ever."""
        delay = FIRST_RETRY_S
        while True:
            if not self.pending:
                self.file.truncate(0)
                self.error = ""
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                await self.apply(self.pending[0])
            except self.retry_on as exc:
                if not self.error:
                    log.error("[tenancy] %s unavailable (%s): %d write(s) wait in %s", self.what, exc, self.backlog,
                              self.path)
                self.error = str(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, LAST_RETRY_S)
                continue
            except Exception:  # a write that can never apply must not hold up the others
                log.exception("[tenancy] dropped a %s write that cannot be applied: %s", self.what, self.pending[0])
            self.pending.popleft()
            delay = FIRST_RETRY_S

    def close(self) -> None:
        self.file.close()


def _read(path: Path) -> list[dict]:
    """The writes an earlier process left; a line cut short by a crash is skipped."""
    writes = []
    if path.exists():
        for line in path.read_bytes().splitlines():
            try:
                writes.append(json.loads(line))
            except ValueError:
                log.warning("[tenancy] skipped a damaged line in %s", path)
    return writes
