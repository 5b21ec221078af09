"""Two real guarded ComfyUI processes with the cluster queue on, their redis-server paused (SIGSTOP): what ComfyUI
asks its queue on the event loop (GET /queue, GET /prompt, a socket's first `status`) is answered from the queue's
listing, so those requests, and the ones that need no Redis at all, are answered while Redis answers nothing; a
request that reads Redis per request (a tenant's /queue: its running prompts anywhere) waits in a thread, not on
the loop. Before and after the pause the counts are the cluster's.

How: every credential is checked in Redis, so the first request of the pause waits out the store's timeout
(STORE_TIMEOUT_S); the store then counts as down for a minute (`store_retry_s`) and callers are recognised from
memory, as during any outage. A Redis read on the loop would then hold the loop for STORE_TIMEOUT_S per read; the
pause ends after PAUSE_BOUND_S at the latest (a timer), which leaves room for the first wait and one such read, not
two, so the queue reads below (four of them would read Redis) would be answered only after Redis answers again,
and the probe that follows them would see Redis answer. No time is measured: the order is asserted."""

from __future__ import annotations

import json
import signal
import threading

import pytest
import redis

from tests.harness.client import ComfyClient
from tests.harness.cluster import job, owner_of, running_cluster, sleep
from tests.harness.redis import RedisServer
from tests.harness.waiting import wait_until

pytestmark = pytest.mark.comfy
STORE_TIMEOUT_S = 8.0
PAUSE_BOUND_S = 2.5 * STORE_TIMEOUT_S  # the pause ends after this at the latest, answered or not (SIGCONT, a timer)
# a lease far longer than the pause: Redis's clock jumps when it resumes, and no worker is taken for lost
CLUSTER = {"enabled": True, "lease_s": 300.0, "heartbeat_s": 0.5, "reap_s": 0.5, "poll_s": 0.1}


@pytest.fixture(scope="module")
def paused_redis(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("slow-redis")).start()
    yield server
    server.process.send_signal(signal.SIGCONT)  # never leave a paused server behind
    server.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, paused_redis):
    with running_cluster(tmp_path_factory, "slow", 2, {"store_timeout_s": STORE_TIMEOUT_S, "store_retry_s": 60.0,
                                                      "cluster": CLUSTER},
                         server=paused_redis) as cluster:
        yield cluster


def status_count(client: ComfyClient) -> int:
    """queue_remaining in the first message of a new socket (ComfyUI's `status`, as the guard routes it)."""
    socket = client.websocket("slow")
    socket.settimeout(30)
    try:
        first = json.loads(socket.recv())
    finally:
        socket.close()
    assert first["type"] == "status", first
    return first["data"]["status"]["exec_info"]["queue_remaining"]


def counts(light: ComfyClient, operator: ComfyClient) -> dict:
    """What the instance answers without a per-request Redis read: ComfyUI's queue and queue count (the operator),
    the tenant's count, each socket's first status; and a tenant's /system_stats (no Redis at all)."""
    queue = operator.get("/queue").json()
    return {"operator /queue": (len(queue["queue_running"]), len(queue["queue_pending"])),
            "operator /prompt": operator.get("/prompt").json()["exec_info"]["queue_remaining"],
            "operator status": status_count(operator),
            "tenant /prompt": light.get("/prompt").json()["exec_info"]["queue_remaining"],
            "tenant status": status_count(light),
            "tenant /system_stats": light.get("/system_stats").status_code}


def test_the_queue_counts_are_the_clusters_and_are_answered_while_redis_is_paused(cluster, paused_redis):
    workers, seeded, client = cluster
    here = workers[0]
    operator = ComfyClient(here.url, seeded.keys["admin"])
    light = ComfyClient(here.url, seeded.keys["light"])
    blockers = [operator.queue(sleep(120.0, f"slow-block{i}")).json()["prompt_id"] for i in range(2)]
    records = wait_until(lambda: all(job(client, pid).get("started") == "1" for pid in blockers)
                         and [job(client, pid) for pid in blockers], what="a blocker on each worker")
    assert {owner_of(workers, r).port for r in records} == {w.port for w in workers}
    elsewhere = ComfyClient(workers[1].url, seeded.keys["light"])
    queued = [elsewhere.queue(sleep(0.1, f"slow{i}")).json()["prompt_id"] for i in range(3)]
    assert all(job(client, pid)["state"] == "queued" for pid in queued)
    # instance 0 accepted none of them: it counts them from the cluster's queue (a listing at most poll_s old)
    wait_until(lambda: light.get("/prompt").json()["exec_info"]["queue_remaining"] == 3, what="the tenant's count")
    expected = {"operator /queue": (1, 3), "operator /prompt": 4, "operator status": 4, "tenant /prompt": 3,
                "tenant status": 3, "tenant /system_stats": 200}
    assert counts(light, operator) == expected
    assert len(light.get("/queue").json()["queue_pending"]) == 3

    resumed = threading.Lock()

    def resume() -> None:
        if resumed.acquire(blocking=False):
            paused_redis.process.send_signal(signal.SIGCONT)

    own_queue: dict = {}
    waiting = threading.Thread(target=lambda: own_queue.update(answer=light.get("/queue")))
    timer = threading.Timer(PAUSE_BOUND_S, resume)
    paused_redis.process.send_signal(signal.SIGSTOP)
    try:
        timer.start()
        # the credential check waits out the store's timeout; from then on callers are recognised from memory
        assert light.get("/system_stats").status_code == 200
        waiting.start()  # reads the tenant's running prompts from Redis: waits (in a thread on the instance)
        during = counts(light, operator)
        probe = redis.Redis.from_url(paused_redis.url, socket_timeout=0.5)
        with probe, pytest.raises(redis.TimeoutError):  # still paused: every answer above came while it was
            probe.ping()
    finally:
        resume()
        timer.cancel()
    assert during == expected  # the last listing, read before the pause
    waiting.join(STORE_TIMEOUT_S + 10)
    # served once Redis answered or its read timed out (then with this instance's running prompts)
    assert own_queue["answer"].status_code == 200
