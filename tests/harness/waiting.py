"""Waiting for a condition another process brings about, with a deadline that names what was awaited."""

from __future__ import annotations

import time


def wait_until(condition, timeout: float = 60.0, what: str = ""):
    """The condition's first truthy value, polled every 0.1 s; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")
