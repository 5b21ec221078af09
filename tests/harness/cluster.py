"""Guarded ComfyUIs on one redis-server with the cluster queue on, and what the cluster tests read of its queue."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from urllib.parse import quote

import redis

from .client import ComfyClient
from .comfyui import ComfyUI
from .redis import RedisServer
from .service import start_instances
from .tenants import Seeded
from .waiting import wait_until

# short lease, quick heartbeats and reaping: a lost worker is noticed within seconds
CLUSTER = {"enabled": True, "lease_s": 3.0, "heartbeat_s": 0.5, "reap_s": 0.5, "poll_s": 0.1}
JOB = "tn:{cq}:job:"  # + prompt id: the queue's record of a prompt (state, owner, claimed, ...)
ENDED = frozenset({"done", "error", "interrupted", "failed", "cancelled"})  # a job record's final states


@contextmanager
def running_cluster(tmp_path_factory, prefix: str, count: int, overrides: dict, *, env: dict | None = None,
                    server: RedisServer | None = None, redis_options: dict | None = None, plugins: tuple = (),
                    ) -> Iterator[tuple[list[ComfyUI], Seeded, redis.Redis]]:
    """`count` guarded ComfyUIs (tests/harness/service.start_instances) with the cluster queue on, their store a
    redis-server: `server` when given (the caller starts and stops it), else one started here with
    `redis_options` (RedisServer's keywords); `plugins`: more custom nodes (start_instances). Yields the instances,
    the seeded tenants and a client of the store (decoded); on exit, also when a start fails, stops what it
    started, the last started first."""
    with ExitStack() as started:
        if server is None:
            server = RedisServer(tmp_path_factory.mktemp(f"{prefix}-redis"), **(redis_options or {}))
            started.callback(server.stop)  # before the start: a server that never answers is stopped too
            server.start()
        workers, seeded = start_instances(tmp_path_factory, prefix, count,
                                          {"store": server.url, "cluster": CLUSTER, **overrides},
                                          env={"OMP_NUM_THREADS": "1", **(env or {})}, plugins=plugins)
        for worker in workers:
            started.callback(worker.stop)
        client = started.enter_context(redis.Redis.from_url(server.url, decode_responses=True))
        yield workers, seeded, client


def sleep(seconds: float, tag: str) -> dict:
    """A prompt of one TenancyTestSleep node (the test node pack): `seconds` of work, its run logged as `tag`."""
    return {"1": {"class_type": "TenancyTestSleep", "inputs": {"seconds": seconds, "tag": tag}}}


def job(client: redis.Redis, prompt_id: str) -> dict:
    return client.hgetall(JOB + prompt_id)


def ended(client: redis.Redis, prompt_ids: list[str]) -> dict:
    """Prompt id -> job record once every one of them is in a final state; {} while any is not."""
    jobs = {pid: job(client, pid) for pid in prompt_ids}
    return jobs if all(j.get("state") in ENDED for j in jobs.values()) else {}


def owner_of(workers: list[ComfyUI], record: dict) -> ComfyUI:
    """The instance a job record names as its owner ("host:port")."""
    return next(w for w in workers if record["owner"].endswith(f":{w.port}"))


@contextmanager
def drained(operator: ComfyClient) -> Iterator[None]:
    """The instance the operator asks takes no prompt while inside: what it accepts runs on another."""
    name = quote(operator.get("/tenancy/admin/cluster").json()["this_instance"], safe="")
    assert operator.post(f"/tenancy/admin/cluster/instances/{name}/drain").status_code == 200
    try:
        wait_until(lambda: any(i["drain"] == "drained" and quote(i["name"], safe="") == name  # its next heartbeat
                               for i in operator.get("/tenancy/admin/cluster").json()["instances"]), what="the drain")
        yield
    finally:
        operator.post(f"/tenancy/admin/cluster/instances/{name}/undrain")
