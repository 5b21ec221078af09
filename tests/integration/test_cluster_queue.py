"""Three real guarded ComfyUI processes on one redis-server with the cluster queue on: a burst from one tenant
spreads over every worker, a newcomer's prompt starts next behind a backlog, Redis restarted mid-burst loses and
repeats nothing, a worker killed between its claim and the start has the prompt redelivered and run once, a worker
killed mid-prompt fails it once (worker_lost) and settles it once, a frozen worker's late result is dropped.

Every sleep (and tone) node run appends its tag to one file (the test node pack's TENANCY_TEST_RUN_LOG), so "ran
once" is counted across the processes; TENANCY_TEST_HOLD_CLAIMED lets a test hold a worker after its claim."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
import redis
import requests

from tenancy.relay import channels
from tenancy.store.redis import RedisStore
from tests.harness.client import ComfyClient
from tests.harness.cluster import ended, job, owner_of, running_cluster, sleep
from tests.harness.redis import RedisServer
from tests.harness.waiting import wait_until

pytestmark = pytest.mark.comfy


def tone(seconds: float, tag: str, delay: float) -> dict:
    """A prompt charged `seconds` (the audio it writes) after `delay` seconds of work."""
    return {"1": {"class_type": "TenancyTestTone", "inputs": {"seconds": seconds, "delay": delay, "tag": tag}},
            "2": {"class_type": "SaveAudio", "inputs": {"audio": ["1", 0], "filename_prefix": f"cluster/{tag}"}}}


@pytest.fixture(scope="module")
def cluster_redis(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("cluster-redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def runs_log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cluster-runs") / "runs.log"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, cluster_redis, runs_log):
    """Its own redis-server (`cluster_redis`), which a test restarts."""
    with running_cluster(tmp_path_factory, "worker", 3, {}, server=cluster_redis,
                         env={"TENANCY_TEST_RUN_LOG": str(runs_log), "TENANCY_TEST_HOLD_CLAIMED": "1"}) as cluster:
        yield cluster


def runs(log: Path) -> Counter:
    """How many times each tag's node ran, over every instance."""
    return Counter(log.read_text().splitlines()) if log.exists() else Counter()


def healthy(worker) -> bool:
    """The instance reaches the store and its outbox (settlements waiting for it) is empty."""
    return requests.get(worker.url + "/tenancy/health", timeout=10).json() == {"status": "ok"}


def account(url: str, tenant: str) -> tuple[list, list, object]:
    """The tenant's ledger, its holds, and its usage on the day of its last ledger entry."""
    async def read():
        store = RedisStore(url)
        try:
            ledger = await store.ledger(tenant)
            return ledger, await store.holds(tenant), await store.usage(tenant, ledger[-1].day)
        finally:
            await store.close()

    return asyncio.run(read())


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
    runner = owner_of(workers, jobs[ids[0]])
    assert ComfyClient(runner.url, seeded.keys["light"]).get(f"/history/{ids[0]}").json()[ids[0]]["outputs"]


def test_a_newcomers_prompt_is_the_next_to_start_behind_a_backlog(cluster):
    workers, seeded, client = cluster
    backlog = ComfyClient(workers[1].url, seeded.keys["light"])
    ids = [backlog.queue(sleep(1.0, f"a{i}")).json()["prompt_id"] for i in range(30)]
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
    assert len(after) >= 20 and all(int(jobs[pid]["claimed"]) >= started for pid in after)  # the next to start


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


def test_redis_restarted_mid_burst_loses_nothing_runs_nothing_twice_and_the_ledger_equals_usage(
        cluster, cluster_redis, runs_log):
    """Two tenants' burst dealt over the three instances; once some prompts ended and others are still queued,
    redis-server is restarted (SIGTERM, AOF on, same port and data, down 1.5 s). Every prompt then ends once,
    done; each node ran once; each reservation settled once at its measured seconds; ledger sums equal usage,
    nothing held."""
    workers, seeded, client = cluster
    senders = {name: [ComfyClient(w.url, seeded.keys[name]) for w in workers] for name in ("light", "heavy")}
    expected: dict[str, tuple[str, float, str]] = {}  # prompt id -> (tenant, seconds charged, tag)
    for i in range(8):
        for name, tenant in (("light", "tenant-light"), ("heavy", "tenant-heavy")):
            seconds, tag = round(0.5 + 0.1 * i, 1), f"restart-{name}-{i}"
            answer = senders[name][i % 3].queue(tone(seconds, tag, delay=0.6))
            assert answer.status_code == 200, answer.text
            expected[answer.json()["prompt_id"]] = (tenant, seconds, tag)
    states = wait_until(lambda: (s := Counter(job(client, pid).get("state") for pid in expected))["done"] >= 3 and s,
                        what="a few prompts to end")
    assert states["queued"] > 0, states  # mid-burst: prompts ended, running and queued when Redis goes away
    # down 1.5 s: every instance's heartbeat (each 0.5 s) fails meanwhile, yet none loses its lease (3 s)
    cluster_redis.restart(down_s=1.5)
    jobs = wait_until(lambda: ended(client, list(expected)), timeout=90, what="the burst after the restart")
    assert {pid: j["state"] for pid, j in jobs.items()} == dict.fromkeys(expected, "done")
    assert all("cluster queue heartbeat" in w.log_text() for w in workers)  # each instance met the outage
    ran = runs(runs_log)
    assert {tag: ran[tag] for _t, _s, tag in expected.values()} == {tag: 1 for _t, _s, tag in expected.values()}
    for worker in workers:
        wait_until(lambda worker=worker: healthy(worker), 30, f"{worker.url} did not drain its outbox")
    for tenant in ("tenant-light", "tenant-heavy"):
        ledger, holds, usage = account(cluster_redis.url, tenant)
        settles = [e for e in ledger if e.kind == "settle"]
        mine = {pid: seconds for pid, (t, seconds, _tag) in expected.items() if t == tenant}
        assert Counter(e.prompt_id for e in settles if e.prompt_id in mine) == Counter(list(mine))  # once each
        for entry in settles:
            if entry.prompt_id in mine:
                assert (entry.outcome, entry.seconds) == ("success", pytest.approx(mine[entry.prompt_id], abs=0.01))
        assert holds == [] and usage.held == 0
        assert usage.used == pytest.approx(sum(e.seconds for e in settles if e.day == ledger[-1].day))


def test_a_worker_killed_after_its_claim_before_the_start_has_the_prompt_redelivered_and_run_once(cluster, runs_log):
    """Two workers busy, the third claims a prompt the test node pack holds it on (between the claim and
    execution_start) and is killed with SIGKILL there: after its lease the prompt is redelivered (attempt 2), runs
    once on another worker, and settles once."""
    workers, seeded, client = cluster
    tenant = ComfyClient(workers[0].url, seeded.keys["light"])
    blockers = [tenant.queue(sleep(2.0, f"pre-hold{i}")).json()["prompt_id"] for i in range(2)]
    busy = wait_until(lambda: all(job(client, pid).get("state") == "running" for pid in blockers)
                      and {owner_of(workers, job(client, pid)) for pid in blockers}, what="two busy workers")
    victim = next(w for w in workers if w not in busy)
    tag = f"hold-after-claim:{victim.port}"
    held = tenant.queue(sleep(0.3, tag)).json()["prompt_id"]
    wait_until(lambda: f"worker held after claiming {held}" in victim.log_text(), what="the held claim")
    claimed = job(client, held)
    assert (claimed["state"], claimed["started"], claimed["attempt"]) == ("running", "0", "1")
    assert owner_of(workers, claimed) is victim
    victim.kill()
    done = wait_until(lambda: job(client, held).get("state") == "done" and job(client, held), timeout=30,
                      what="the redelivered prompt")
    assert done["attempt"] == "2" and owner_of(workers, done) in busy
    assert any(w.audit_line("cluster_reap", held, "redeliver", timeout=0.5) for w in busy)
    assert runs(runs_log)[tag] == 1
    reservation = wait_until(lambda: settled(client, "tenant-light", held).get("state") == "settled"
                             and settled(client, "tenant-light", held), what="the settlement")
    assert reservation["outcome"] == "success"
    ledger = client.xrange("tn:{tenant-light}:ledger")
    assert sum(1 for _id, e in ledger if e["prompt_id"] == held and e["kind"] == "settle") == 1


def lost_in_history(history: dict, prompt_id: str) -> bool:
    """The entry is the one the reaper recorded: status error, its reason, no outputs."""
    status = history[prompt_id]["status"]
    return status["status_str"] == "error" and history[prompt_id]["outputs"] == {} and \
        [m[1]["exception_type"] for m in status["messages"]] == ["tenancy.worker_lost"]


def messages_until_the_end(socket, prompt_id: str) -> list[dict]:
    """The text messages a socket gets about a prompt, up to ComfyUI's last (`executing` with no node)."""
    socket.settimeout(60)
    received = []
    while not received or received[-1]["type"] != "executing" or received[-1]["data"]["node"] is not None:
        message = socket.recv()
        if isinstance(message, str) and json.loads(message)["data"].get("prompt_id") == prompt_id:
            received.append(json.loads(message))
    return received


def test_a_worker_killed_while_running_fails_its_prompt_once_and_a_frozen_one_cannot_finish(cluster):
    """A prompt whose worker is lost ends for its client as a failed prompt does: its socket (held by another
    instance) gets `execution_error` (tenancy.worker_lost) and the last `executing`, and its history entry, the
    same from any instance, says so; the frozen worker's late result changes none of it."""
    workers, seeded, client = cluster
    tenant = ComfyClient(workers[0].url, seeded.keys["light"])
    frozen_id = tenant.queue(sleep(5.0, "frozen")).json()["prompt_id"]
    running = wait_until(lambda: job(client, frozen_id).get("started") == "1" and job(client, frozen_id),
                       what="the prompt to start")
    frozen = owner_of(workers, running)
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
    reader = ComfyClient(frozen.url, seeded.keys["light"])
    assert lost_in_history(wait_until(lambda: reader.get(f"/history/{frozen_id}").json(), what="the entry"),
                           frozen_id)
    time.sleep(6)  # the woken worker finishes its sleep (or interrupts it): its result changes nothing
    assert job(client, frozen_id)["state"] == "failed"
    assert settled(client, "tenant-light", frozen_id)["outcome"] == "worker_lost"
    assert lost_in_history(reader.get(f"/history/{frozen_id}").json(), frozen_id)
    ledger = client.xrange("tn:{tenant-light}:ledger")
    assert sum(1 for _id, e in ledger if e["prompt_id"] == frozen_id and e["kind"] == "settle") == 1

    killed_id = tenant.queue(sleep(5.0, "killed"), client_id="watcher").json()["prompt_id"]
    running = wait_until(lambda: job(client, killed_id).get("started") == "1" and job(client, killed_id),
                       what="the prompt to start")
    victim = owner_of(workers, running)
    survivor = next(w for w in workers if w is not victim and w.process.poll() is None)
    watcher = ComfyClient(survivor.url, seeded.keys["light"]).websocket("watcher")  # its client, on another instance
    # the survivor relays what is published for the socket once Redis holds its subscription (made as it opened)
    wait_until(lambda: client.pubsub_numsub(channels(0).socket("tenant-light:watcher"))[0][1] == 1,
               what="the socket's subscription")
    victim.kill()
    try:
        ending = messages_until_the_end(watcher, killed_id)
    finally:
        watcher.close()
    assert [m["type"] for m in ending] == ["execution_error", "executing"]
    assert ending[0]["data"]["exception_type"] == "tenancy.worker_lost"
    lost = wait_until(lambda: job(client, killed_id).get("state") == "failed" and job(client, killed_id),
                    timeout=30, what="the reaper")
    assert lost["reason"] == "worker_lost"
    assert wait_until(lambda: settled(client, "tenant-light", killed_id).get("outcome") == "worker_lost",
                    what="the settlement")
    assert lost_in_history(ComfyClient(survivor.url, seeded.keys["light"]).get(f"/history/{killed_id}").json(),
                           killed_id)
    after = ComfyClient(survivor.url, seeded.keys["light"]).queue(sleep(0.2, "after")).json()["prompt_id"]
    assert wait_until(lambda: job(client, after).get("state") == "done", what="the survivors")
