"""A store that is down or hung costs one timeout, not one per request: after a failure, calls fail at once
for `retry_s`, then a single call tries the store again while the others keep failing at once.

Without it, every request during a Redis pause waits out its own timeout (requests pile up), and every call on a
SQLite file locked by another process blocks the event loop for the lock wait.
"""

from __future__ import annotations

import inspect
import time

from .protocol import StoreUnavailable

UNGUARDED = ("close",)  # closing a failing store must still close it


class Breaker:
    def __init__(self, store, retry_s: float) -> None:
        self._store = store
        self.retry_s = retry_s
        self._open_until = 0.0  # while failing: calls fail at once until this monotonic time; 0: closed
        self._probing = False  # one call is trying the store after a failure
        self._error = ""

    def __getattr__(self, name: str):
        attribute = getattr(self._store, name)
        if name.startswith("_") or name in UNGUARDED or not inspect.iscoroutinefunction(attribute):
            return attribute

        async def guarded(*args, **kwargs):
            probe = self._admit()
            try:
                result = await attribute(*args, **kwargs)
            except StoreUnavailable as exc:
                self._error = str(exc)
                self._open_until = time.monotonic() + self.retry_s
                raise
            except Exception:  # the store answered (a Conflict, say): it is up
                self._open_until = 0.0
                raise
            finally:
                if probe:
                    self._probing = False
            self._open_until = 0.0
            return result

        setattr(self, name, guarded)  # built once per method, then found without __getattr__
        return guarded

    def _admit(self) -> bool:
        """Raise while the store is known to be failing; True when this call is the one that tries it again."""
        if not self._open_until:
            return False
        if self._probing or time.monotonic() < self._open_until:
            raise StoreUnavailable(f"{self._error} (trying again within {self.retry_s:g} s)")
        self._probing = True
        return True
