"""A hung store costs one timeout, not one per call: while a SQLite file is locked by another process, the first
call waits out the lock timeout, the next ones fail at once, and one call a `retry_s` tries again (a real
SQLite file and a real second connection holding its write lock)."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest

from tenancy.records import ReserveRequest
from tenancy.store import StoreUnavailable
from tenancy.store.breaker import Breaker
from tenancy.store.sqlite import SqliteStore

NOW = 1_795_305_600.0


def request(prompt_id: str) -> ReserveRequest:
    return ReserveRequest("acme", prompt_id, 1.0, 100.0, 100, "2026-11-22", NOW + 600, "i1", NOW)


async def timed(call) -> tuple[float, Exception | None]:
    start = time.monotonic()
    try:
        await call
    except StoreUnavailable as exc:
        return time.monotonic() - start, exc
    return time.monotonic() - start, None


def test_a_locked_store_fails_fast_after_the_first_timeout_and_recovers(tmp_path):
    async def run() -> None:
        store = Breaker(SqliteStore(tmp_path / "store.db", timeout_s=0.2), retry_s=0.5)
        other = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        first, error = await timed(store.reserve(request("a")))
        assert error is not None and first >= 0.2
        following = [await timed(store.reserve(request(f"b{i}"))) for i in range(20)]
        assert all(error is not None and took < 0.05 for took, error in following)
        assert "trying again" in str(following[0][1])
        other.execute("ROLLBACK")
        await asyncio.sleep(0.5)
        took, error = await timed(store.reserve(request("c")))
        assert error is None and took < 0.2
        assert [r.prompt_id for r in await store.holds()] == ["c"]
        other.close()
        await store.close()

    asyncio.run(run())


def test_while_one_call_tries_again_the_others_fail_at_once(tmp_path):
    async def run() -> None:
        store = Breaker(SqliteStore(tmp_path / "store.db", timeout_s=0.2), retry_s=0.1)
        other = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailable):
            await store.reserve(request("a"))
        await asyncio.sleep(0.15)
        # The probe blocks the loop for the SQLite lock wait, so the second call runs only after it failed:
        # it must find the breaker open again, not try the store a second time.
        results = await asyncio.gather(*(timed(store.reserve(request(f"p{i}"))) for i in range(2)))
        assert results[0][0] >= 0.2 and results[1][0] < 0.05
        assert all(error is not None for _, error in results)
        other.execute("ROLLBACK")
        other.close()
        await store.close()

    asyncio.run(run())
