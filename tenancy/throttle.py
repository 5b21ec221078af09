"""An in-process GCRA limiter for login and token attempts (per IP and per account)."""

from __future__ import annotations

import time
from collections import OrderedDict

MAX_KEYS = 100_000


class Throttle:
    """Allows `rate_per_minute` with a burst of `burst`; `hit` returns 0 when allowed, else seconds to wait."""

    def __init__(self, rate_per_minute: float, burst: int = 5) -> None:
        self.interval = 60.0 / rate_per_minute
        self.tolerance = self.interval * max(burst - 1, 0)
        self.tat: OrderedDict[str, float] = OrderedDict()

    def hit(self, key: str, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        tat = max(self.tat.get(key, now), now)
        if tat - now > self.tolerance:
            return tat - now - self.tolerance
        self.tat[key] = tat + self.interval
        self.tat.move_to_end(key)
        while len(self.tat) > MAX_KEYS:
            self.tat.popitem(last=False)
        return 0.0
