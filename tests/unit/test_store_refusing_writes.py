"""A Redis that refuses writes is an outage, not an error of the call: out of memory under `noeviction` (a real
redis-server started with a tiny `maxmemory`, filled up) and a read-only replica (the same server made a replica of
a primary that is not there). The cluster queue's scripts and the store's own calls (its lane's scripts and redis-
py's pool) raise StoreUnavailable then, so /prompt answers 503 with its hold refunded instead of a 500; reads still
answer, and writes work again once the server takes them."""

from __future__ import annotations

import asyncio

import pytest
import redis

from tenancy.cluster import fair_units
from tenancy.records import ReserveRequest, Tenant
from tenancy.store import StoreUnavailable
from tenancy.store.cluster_queue import ClusterQueue
from tenancy.store.redis import RedisStore
from tests.harness.ports import free_port
from tests.harness.redis import RedisServer

pytestmark = pytest.mark.redis
BODY = "[{}, {}, [], null, 0]"
NOW = 1_795_305_600.0


@pytest.fixture(scope="module")
def small_redis(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("small-redis"), maxmemory="4mb").start()
    yield server
    server.stop()


@pytest.fixture
def client(small_redis):
    with redis.Redis.from_url(small_redis.url, decode_responses=True) as client:
        client.execute_command("REPLICAOF", "NO", "ONE")
        client.flushdb()
        yield client
        client.execute_command("REPLICAOF", "NO", "ONE")
        client.flushdb()


def fill(client: redis.Redis) -> int:
    """Write until the server refuses even a small write: it is out of memory now. Values shrink as it fills (a
    big write's own request buffer counts until it is refused, so the server is not full yet after the first
    refusal)."""
    written = 0
    for size in (65536, 1024, 16):
        for _ in range(100_000):
            try:
                client.set(f"filler:{written}", "x" * size)
            except redis.exceptions.OutOfMemoryError:
                break
            written += 1
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        client.set("probe", "1")
    return written


def hold(prompt_id: str) -> ReserveRequest:
    return ReserveRequest("acme", prompt_id, 1.0, 100.0, 10, "2026-11-22", NOW + 600, "i1", NOW)


def refused(call) -> StoreUnavailable:
    with pytest.raises(StoreUnavailable) as caught:
        call()
    return caught.value


def test_out_of_memory_is_an_outage_for_the_cluster_queue_and_the_store(client, small_redis):
    queue = ClusterQueue(small_redis.url, "gpu-1", lease_s=3.0, max_redeliveries=1)
    queue.enqueue("before", "acme", fair_units(1.0, 1.0), 0, BODY, 1.0)
    assert fill(client) > 0
    assert "OutOfMemoryError" in str(refused(lambda: queue.enqueue("p-1", "acme", fair_units(1.0, 1.0), 0, BODY,
                                                                   1.0)))
    refused(lambda: queue.heartbeat("", 0))
    refused(lambda: queue.drain("gpu-2"))
    assert queue.status().queued == 1  # reads still answer

    async def store_calls() -> None:
        store = RedisStore(small_redis.url, timeout=2.0)
        try:
            with pytest.raises(StoreUnavailable):  # a script on the store's lane
                await store.reserve(hold("p-1"))
            with pytest.raises(StoreUnavailable):  # a call through redis-py's pool
                await store.put_tenant(Tenant("acme", "basic"), create=True)
            for key in client.scan_iter("filler:*"):
                client.delete(key)
            assert (await store.reserve(hold("p-2"))).allowed  # back: nothing to reset
        finally:
            await store.close()
    asyncio.run(store_calls())
    assert queue.enqueue("p-3", "acme", fair_units(1.0, 1.0), 0, BODY, 1.0) > 0


def test_a_read_only_replica_is_an_outage_for_the_cluster_queue_and_the_store(client, small_redis):
    queue = ClusterQueue(small_redis.url, "gpu-1", lease_s=3.0, max_redeliveries=1)
    queue.enqueue("before", "acme", fair_units(1.0, 1.0), 0, BODY, 1.0)
    client.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))  # a failover left it a replica
    assert "ReadOnlyError" in str(refused(lambda: queue.enqueue("p-1", "acme", fair_units(1.0, 1.0), 0, BODY, 1.0)))
    refused(queue.claim)
    assert queue.status().queued == 1

    async def store_calls() -> None:
        store = RedisStore(small_redis.url, timeout=2.0)
        try:
            with pytest.raises(StoreUnavailable):
                await store.reserve(hold("p-1"))
            with pytest.raises(StoreUnavailable):
                await store.put_tenant(Tenant("acme", "basic"), create=True)
        finally:
            await store.close()
    asyncio.run(store_calls())
