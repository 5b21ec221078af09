"""Three real guarded ComfyUI processes on one redis-server with the cluster queue on: a burst from one tenant
spreads over every worker, a newcomer's prompt starts next behind a backlog, a worker killed mid-prompt fails it
once (worker_lost) and settles it once, a frozen worker's late result is dropped."""

from __future__ import annotations

import os
import signal
import time

import pytest
import redis

from tests.harness.client import ComfyClient
from tests.harness.redis import RedisServer
from tests.harness.service import start_instances
from tests.harness.waiting import wait_until

pytestmark = pytest.mark.comfy
CLUSTER = {"enabled": True, "lease_s": 3.0, "heartbeat_s": 0.5, "reap_s": 0.5, "poll_s": 0.1}
JOB = "tn:{cq}:job:"


def sleep(seconds: float, tag: str) -> dict:
    return {"1": {"class_type": "TenancyTestSleep", "inputs": {"seconds": seconds, "tag": tag}}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("cluster-redis")).start()
    try:
        workers, seeded = start_instances(tmp_path_factory, "worker", 3, {"store": server.url, "cluster": CLUSTER},
                                          env={"OMP_NUM_THREADS": "1"})
    except BaseException:
        server.stop()
        raise
    try:
        yield workers, seeded, redis.Redis.from_url(server.url, decode_responses=True)
    finally:
        for worker in workers:
            worker.stop()
        server.stop()


def job(client: redis.Redis, prompt_id: str) -> dict:
    return client.hgetall(JOB + prompt_id)


def ended(client: redis.Redis, prompt_ids: list[str]) -> dict:
    jobs = {pid: job(client, pid) for pid in prompt_ids}
    return jobs if all(j.get("state") in ("done", "error", "failed", "cancelled") for j in jobs.values()) else {}


def idle_while_queued(jobs) -> list[int]:
    """Per prompt, in ms: how long a worker that was asking for work sat idle while the prompt was already queued
    (from the later of its arrival and the worker's first ask after its previous prompt, to its hand-out). What
    ComfyUI does between two prompts before it asks again (its gc every 10 s) is the worker's, not the queue's."""
    return [int(j["claimed"]) - max(int(j["created"]), int(j["asked"])) for j in jobs]


def settled(client: redis.Redis, tenant: str, prompt_id: str) -> dict:
    return client.hgetall(f"tn:{{{tenant}}}:res:{prompt_id}")


def test_a_burst_sent_to_one_instance_runs_on_all_three_and_settles_each_prompt_once(cluster):
    workers, seeded, client = cluster
    sender = ComfyClient(workers[0].url, seeded.keys["light"])
    ids = []
    for i in range(6):
        answer = sender.queue(sleep(2.0, f"burst{i}"))
        assert answer.status_code == 200, answer.text
        ids.append(answer.json()["prompt_id"])
    jobs = wait_until(lambda: ended(client, ids), what="the burst")
    assert {j["state"] for j in jobs.values()} == {"done"}
    owners = {j["owner"] for j in jobs.values()}
    assert len(owners) == 3, owners
    assert max(idle_while_queued(jobs.values())) <= 1000
    for pid in ids:
        reservation = wait_until(lambda pid=pid: settled(client, "tenant-light", pid).get("state") == "settled"
                               and settled(client, "tenant-light", pid), what="the settlement")
        assert reservation["outcome"] == "success"
    # the instance that ran a prompt answers its history, owned by the tenant that sent it elsewhere
    runner = next(w for w in workers if w.url.endswith(":" + jobs[ids[0]]["owner"].rsplit(":", 1)[1]))
    assert ComfyClient(runner.url, seeded.keys["light"]).get(f"/history/{ids[0]}").json()[ids[0]]["outputs"]


def test_a_newcomers_prompt_is_the_next_to_start_behind_a_backlog(cluster):
    workers, seeded, client = cluster
    backlog = ComfyClient(workers[1].url, seeded.keys["light"])
    ids = [backlog.queue(sleep(1.5, f"a{i}")).json()["prompt_id"] for i in range(9)]
    wait_until(lambda: sum(job(client, pid).get("state") == "running" for pid in ids) == 3, what="three running")
    # a tenant's queue read at an instance it never sent to: its pending prompts, and nobody else's
    pending = ComfyClient(workers[2].url, seeded.keys["light"]).get("/queue").json()["queue_pending"]
    assert pending and {item[1] for item in pending} <= set(ids)
    assert ComfyClient(workers[2].url, seeded.keys["quota30"]).get("/queue").json()["queue_pending"] == []
    answer = ComfyClient(workers[2].url, seeded.keys["quota30"]).queue(sleep(0.5, "newcomer"))
    assert answer.status_code == 200, answer.text
    newcomer = answer.json()["prompt_id"]
    jobs = wait_until(lambda: ended(client, [*ids, newcomer]), what="backlog and newcomer")
    arrived, started = int(jobs[newcomer]["created"]), int(jobs[newcomer]["claimed"])
    after = [pid for pid in ids if int(jobs[pid]["claimed"]) > arrived]
    assert after and all(int(jobs[pid]["claimed"]) >= started for pid in after)


def test_weights_four_to_one_give_eight_to_two_in_the_first_ten_starts_across_the_cluster(cluster):
    """Every worker busy with an operator's prompt while both tenants queue ten each: the backlog is saturated
    before anything of theirs starts."""
    workers, seeded, client = cluster
    blockers = [ComfyClient(w.url, seeded.keys["admin"]).queue(sleep(3.0, f"block{i}")).json()["prompt_id"]
                for i, w in enumerate(workers)]
    wait_until(lambda: all(job(client, pid).get("state") == "running" for pid in blockers), what="the blockers")
    heavy, light = (ComfyClient(workers[i].url, seeded.keys[name]) for i, name in ((0, "heavy"), (1, "light")))
    ids = {}
    for i in range(10):
        for name, sender in (("heavy", heavy), ("light", light)):
            ids[sender.queue(sleep(0.3, f"{name}{i}")).json()["prompt_id"]] = name
    jobs = wait_until(lambda: ended(client, list(ids)), what="both backlogs")
    first_ten = sorted(ids, key=lambda pid: int(jobs[pid]["order"]))[:10]
    assert sorted(ids[pid] for pid in first_ten).count("heavy") == 8


def test_a_worker_killed_while_running_fails_its_prompt_once_and_a_frozen_one_cannot_finish(cluster):
    workers, seeded, client = cluster
    tenant = ComfyClient(workers[0].url, seeded.keys["light"])
    frozen_id = tenant.queue(sleep(5.0, "frozen")).json()["prompt_id"]
    running = wait_until(lambda: job(client, frozen_id).get("started") == "1" and job(client, frozen_id),
                       what="the prompt to start")
    frozen = next(w for w in workers if running["owner"].endswith(f":{w.port}"))
    os.kill(frozen.process.pid, signal.SIGSTOP)
    try:
        lost = wait_until(lambda: job(client, frozen_id).get("state") == "failed" and job(client, frozen_id),
                        timeout=30, what="the reaper")
    finally:
        os.kill(frozen.process.pid, signal.SIGCONT)
    assert lost["reason"] == "worker_lost"
    reservation = wait_until(lambda: settled(client, "tenant-light", frozen_id).get("state") == "settled"
                           and settled(client, "tenant-light", frozen_id), what="the settlement")
    assert reservation["outcome"] == "worker_lost"
    time.sleep(6)  # the woken worker finishes its sleep (or interrupts it): its result changes nothing
    assert job(client, frozen_id)["state"] == "failed"
    assert settled(client, "tenant-light", frozen_id)["outcome"] == "worker_lost"
    assert ComfyClient(frozen.url, seeded.keys["light"]).get(f"/history/{frozen_id}").json() == {}
    ledger = client.xrange("tn:{tenant-light}:ledger")
    assert sum(1 for _id, e in ledger if e["prompt_id"] == frozen_id and e["kind"] == "settle") == 1

    killed_id = tenant.queue(sleep(5.0, "killed")).json()["prompt_id"]
    running = wait_until(lambda: job(client, killed_id).get("started") == "1" and job(client, killed_id),
                       what="the prompt to start")
    victim = next(w for w in workers if running["owner"].endswith(f":{w.port}"))
    victim.kill()
    lost = wait_until(lambda: job(client, killed_id).get("state") == "failed" and job(client, killed_id),
                    timeout=30, what="the reaper")
    assert lost["reason"] == "worker_lost"
    assert wait_until(lambda: settled(client, "tenant-light", killed_id).get("outcome") == "worker_lost",
                    what="the settlement")
    survivor = next(w for w in workers if w is not victim)
    after = ComfyClient(survivor.url, seeded.keys["light"]).queue(sleep(0.2, "after")).json()["prompt_id"]
    assert wait_until(lambda: job(client, after).get("state") == "done", what="the survivors")
