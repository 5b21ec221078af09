"""Waiting in tests for what a server does in the background."""

from __future__ import annotations

import time


def wait_until(condition, timeout: float, what: str):
    """`condition()`'s first true value, polled every 0.1 s; fails naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")
