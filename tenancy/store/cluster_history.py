"""The history every instance shares, in Redis (with the cluster queue): each owner's finished prompts in the
order they finished, their records (`tenancy.shared_history`), trimmed per plan by `lua/history_record.lua`.

Keys, in the owner's slot like its admission keys (`redis_layout.tenant_key`; operators' prompts under `_admin`):

    tn:{acme}:hist          zset   prompt id -> when it finished (Redis ms, strictly rising per owner): the order
                                   a tenant's /history pages over
    tn:{acme}:hist:entry    hash   prompt id -> the record (JSON: ComfyUI's entry and the guard's outcome)

With `history_days` both expire that long after the owner's last record. Every read costs what the owner has:
a page is its count, then the page's ids and records (`history_index.page_bounds`), never another owner's.

Calls are synchronous (redis-py): the worker thread records; the adapter reads in a thread of its own.
"""

from __future__ import annotations

from pathlib import Path

import redis

from ..history_index import page_bounds
from ..shared_history import Retention
from .protocol import StoreUnavailable
from .redis_layout import tenant_key

LUA = Path(__file__).with_name("lua")


def keys(owner: str) -> tuple[str, str]:
    """The owner's order and entries (`owner`: a tenant, or `shared_history.namespace(None)`)."""
    return tenant_key(owner, "hist"), tenant_key(owner, "hist:entry")


class ClusterHistory:
    def __init__(self, url: str, *, timeout_s: float = 2.0) -> None:
        self.redis = redis.Redis.from_url(url, decode_responses=True, socket_timeout=timeout_s,
                                          socket_connect_timeout=timeout_s)
        self._record = self.redis.register_script((LUA / "history_record.lua").read_text())

    def record(self, owner: str, prompt_id: str, record: str, retention: Retention, first: bool = False) -> int:
        """Add (or write again) a finished prompt's record, when `first` only if it has none; how many of the
        owner's oldest were trimmed."""
        return int(self._call(lambda: self._record(keys=list(keys(owner)), args=[
            prompt_id, record, retention.items, retention.keep_ms, "1" if first else "0"])))

    def page(self, owner: str, max_items: int | None, offset: int | None) -> list[tuple[str, str]]:
        """(prompt id, record) of one page of the owner's history, oldest first, with ComfyUI's paging."""
        order, _ = keys(owner)
        start, stop = page_bounds(self._call(lambda: self.redis.zcard(order)), max_items, offset)
        if start >= stop:
            return []
        return self._records(owner, self._call(lambda: self.redis.zrange(order, start, stop - 1)))

    def everything(self, owner: str) -> list[tuple[str, str]]:
        """(prompt id, record) of all the owner's history, oldest first."""
        order, entries = keys(owner)

        def read():
            pipe = self.redis.pipeline(transaction=False)
            pipe.zrange(order, 0, -1)
            pipe.hgetall(entries)
            return pipe.execute()
        ids, records = self._call(read)
        return [(pid, records[pid]) for pid in ids if pid in records]

    def ids(self, owner: str) -> list[str]:
        return self._call(lambda: self.redis.zrange(keys(owner)[0], 0, -1))

    def entry(self, owner: str, prompt_id: str) -> str | None:
        return self._call(lambda: self.redis.hget(keys(owner)[1], prompt_id))

    def forget(self, owner: str, prompt_ids: list[str]) -> None:
        if not prompt_ids:
            return
        order, entries = keys(owner)

        def write():
            pipe = self.redis.pipeline(transaction=True)  # both or neither: an id is listed iff it has a record
            pipe.zrem(order, *prompt_ids)
            pipe.hdel(entries, *prompt_ids)
            pipe.execute()
        self._call(write)

    def _records(self, owner: str, prompt_ids: list[str]) -> list[tuple[str, str]]:
        if not prompt_ids:
            return []
        found = self._call(lambda: self.redis.hmget(keys(owner)[1], prompt_ids))
        return [(pid, text) for pid, text in zip(prompt_ids, found, strict=True) if text is not None]

    def _call(self, call):
        """Any Redis failure is the store's unavailability: unreachable, or refusing writes (an OOM at maxmemory
        with noeviction). The worker recording a result must never fail into ComfyUI's task_done."""
        try:
            return call()
        except redis.RedisError as exc:
            raise StoreUnavailable(f"cluster history: {exc}") from exc

    def close(self) -> None:
        self.redis.close()
