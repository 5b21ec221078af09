"""The outbox: store writes that follow execution wait in a local file while the store is unavailable, are
applied in order once it answers, and a process that dies with writes pending has them applied by the next one,
exactly once in effect (a real SQLite store, locked by another connection to make it unavailable)."""

from __future__ import annotations

import asyncio
import json
import sqlite3

from tenancy.records import ReserveRequest
from tenancy.store.outbox import Outbox
from tenancy.store.sqlite import SqliteStore

NOW = 1_795_305_600.0
DAY = "2026-11-22"


def request(prompt_id: str, seconds: float = 10.0) -> ReserveRequest:
    return ReserveRequest("acme", prompt_id, seconds, 100.0, 10, DAY, NOW + 600, "i1", NOW)


def settle(prompt_id: str, actual: float) -> dict:
    return {"kind": "settle", "prompt_id": prompt_id, "actual": actual}


def applier(store: SqliteStore, applied: list):
    async def apply(write: dict) -> None:
        await store.settle("acme", write["prompt_id"], write["actual"], "success", now=NOW + 1)
        applied.append(write["prompt_id"])

    return apply


def test_writes_wait_while_the_store_is_locked_then_apply_in_order(tmp_path):
    async def run() -> None:
        store = SqliteStore(tmp_path / "store.db", timeout_s=0.05)
        for prompt_id in ("a", "b", "c"):
            await store.reserve(request(prompt_id))
        applied: list[str] = []
        outbox = Outbox(tmp_path / "outbox.jsonl", applier(store, applied))
        worker = asyncio.get_running_loop().create_task(outbox.run())
        other = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        for prompt_id, actual in (("a", 1.0), ("b", 2.0), ("c", 3.0)):
            outbox.put(settle(prompt_id, actual))
        await asyncio.sleep(0.3)
        assert applied == [] and outbox.backlog == 3 and outbox.error
        assert len((tmp_path / "outbox.jsonl").read_text().splitlines()) == 3
        other.execute("ROLLBACK")
        await asyncio.wait_for(outbox.drained(), 5)
        assert applied == ["a", "b", "c"] and outbox.error == ""
        assert (await store.usage("acme", DAY)).used == 6.0
        assert (tmp_path / "outbox.jsonl").read_bytes() == b""
        worker.cancel()
        outbox.close()
        other.close()
        await store.close()

    asyncio.run(run())


def test_the_next_process_applies_what_a_dead_one_left_and_charges_once(tmp_path):
    path = tmp_path / "outbox.jsonl"

    async def run() -> None:
        store = SqliteStore(tmp_path / "store.db")
        await store.reserve(request("ran"))
        await store.reserve(request("also-ran"))
        await store.settle("acme", "ran", 4.0, "success")  # applied before the crash, still in the file
        path.write_text(json.dumps(settle("ran", 4.0)) + "\n" + json.dumps(settle("also-ran", 5.0)) + "\n"
                        + '{"kind": "settle", "prompt_')  # the last line was cut short by the crash
        applied: list[str] = []
        outbox = Outbox(path, applier(store, applied))
        assert outbox.backlog == 2
        worker = asyncio.get_running_loop().create_task(outbox.run())
        await asyncio.wait_for(outbox.drained(), 5)
        assert applied == ["ran", "also-ran"]
        usage = await store.usage("acme", DAY)
        assert (usage.used, usage.held, usage.active) == (9.0, 0.0, 0)
        worker.cancel()
        outbox.close()
        await store.close()

    asyncio.run(run())


def test_a_write_that_can_never_apply_does_not_hold_up_the_others(tmp_path):
    async def run() -> None:
        applied: list[str] = []

        async def apply(write: dict) -> None:
            if write["kind"] == "unknown":
                raise ValueError("unknown outbox write")
            applied.append(write["prompt_id"])

        outbox = Outbox(tmp_path / "outbox.jsonl", apply)
        worker = asyncio.get_running_loop().create_task(outbox.run())
        outbox.put({"kind": "unknown", "prompt_id": "x"})
        outbox.put(settle("y", 1.0))
        await asyncio.wait_for(outbox.drained(), 5)
        assert applied == ["y"]
        worker.cancel()
        outbox.close()

    asyncio.run(run())
