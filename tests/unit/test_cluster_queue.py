"""The cluster queue's scripts against a real redis-server, with fake instances as threads and short leases: fair
order across instances, caps, leases, redelivery, worker_lost, fencing of a frozen worker, one settlement."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import pytest
import redis

from tenancy.cluster import (
    TERMINAL,
    Carried,
    Head,
    carried,
    fair_units,
    in_turn,
    lost_entry,
    lost_error,
    next_tenant,
    reap_action,
    renumbered,
)
from tenancy.store.cluster_queue import PREFIX, ClusterQueue
from tests.harness.redis import RedisServer

pytestmark = pytest.mark.redis
LEASE_S = 0.4


@pytest.fixture
def url(redis_server) -> str:
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushdb()
    return redis_server.url


def worker(url: str, name: str, lease_s: float = LEASE_S, max_redeliveries: int = 1,
           lookahead: int = 1) -> ClusterQueue:
    return ClusterQueue(url, name, lease_s=lease_s, max_redeliveries=max_redeliveries, kept_s=60,
                        lookahead=lookahead)


def enqueue(queue: ClusterQueue, tenant: str, count: int, weight: float = 1.0, cap: int = 0) -> list[str]:
    ids = [f"{tenant}-{i:03d}" for i in range(count)]
    for pid in ids:
        queue.enqueue(pid, tenant, fair_units(1.0, weight), cap, "[{}, {}, [], null, 0]", 1.0)
    return ids


def run_to_end(queue: ClusterQueue, claim) -> None:
    assert queue.start(claim.prompt_id, claim.attempt)
    assert queue.complete(claim.prompt_id, claim.attempt, "done")
    assert queue.may_settle(claim.prompt_id, claim.attempt)
    assert queue.may_settle(claim.prompt_id, claim.attempt)  # its outbox retrying: still this worker's to settle


def test_weights_four_to_one_give_eight_to_two_in_the_first_ten_starts(url):
    queue = worker(url, "gpu-1")
    enqueue(queue, "a", 20, weight=4)
    enqueue(queue, "b", 20, weight=1)
    starts = []
    for _ in range(10):
        claim = queue.claim()
        starts.append(claim.tenant)
        run_to_end(queue, claim)
    assert Counter(starts) == {"a": 8, "b": 2}


def test_a_newcomers_prompt_starts_next_while_a_backlogged_tenant_holds_three_workers(url):
    gpus = [worker(url, f"gpu-{i}") for i in range(4)]
    enqueue(gpus[0], "a", 30)
    first = [gpu.claim() for gpu in gpus[:3]]
    assert [c.tenant for c in first] == ["a", "a", "a"]
    enqueue(gpus[1], "b", 1)
    assert gpus[3].claim().tenant == "b"


def test_a_newcomers_prompt_starts_next_also_when_the_backlogs_running_prompts_all_ended_first(url):
    gpus = [worker(url, f"gpu-{i}") for i in range(3)]
    enqueue(gpus[0], "a", 30)
    first = [gpu.claim() for gpu in gpus]
    enqueue(gpus[1], "b", 1)  # ties with a's next number
    for gpu, claim in zip(gpus, first, strict=True):
        run_to_end(gpu, claim)  # all three end before any worker asks again: both tenants run none
    assert gpus[0].claim().tenant == "b"


def test_a_tenant_at_its_cap_is_skipped_and_offered_again_when_one_ends(url):
    gpus = [worker(url, f"gpu-{i}") for i in range(4)]
    enqueue(gpus[0], "a", 10, cap=2)
    enqueue(gpus[0], "b", 10, weight=0.5)
    claims = [gpu.claim() for gpu in gpus]
    assert Counter(c.tenant for c in claims) == {"a": 2, "b": 2}
    done = next(c for c in claims if c.tenant == "a")
    run_to_end(gpus[0] if done is claims[0] else gpus[claims.index(done)], done)
    assert gpus[claims.index(done)].claim().tenant == "a"


def test_nothing_to_claim_answers_none_and_enqueue_is_idempotent(url):
    queue = worker(url, "gpu-1")
    assert queue.claim() is None
    first = queue.enqueue("p1", "a", 1000, 0, "[{}, {}, []]", 1.0)
    assert queue.enqueue("p1", "a", 1000, 0, "[{}, {}, []]", 1.0) == first
    assert queue.queued() == 1
    assert queue.claim().prompt_id == "p1" and queue.claim() is None


def test_a_prompt_whose_worker_died_before_it_started_is_redelivered_once_and_runs_once(url):
    dead, alive = worker(url, "gpu-dead"), worker(url, "gpu-alive")
    (pid,) = enqueue(dead, "a", 1)
    taken = dead.claim()
    time.sleep(LEASE_S + 0.1)
    reaped = alive.reap()
    assert [(r.prompt_id, r.action, r.settle) for r in reaped] == [(pid, "redeliver", False)]
    assert alive.reap() == []
    again = alive.claim()
    assert (again.prompt_id, again.attempt) == (pid, 2)
    assert not dead.start(pid, taken.attempt)  # the dead one's attempt is fenced out
    run_to_end(alive, again)
    assert not dead.complete(pid, taken.attempt, "done") and not dead.may_settle(pid, taken.attempt)
    assert alive.job(pid)["state"] == "done"


def test_a_prompt_redelivered_too_often_fails_and_is_refunded_by_the_reaper(url):
    gpu = worker(url, "gpu-1", max_redeliveries=1)
    (pid,) = enqueue(gpu, "a", 1)
    for expected in ("redeliver", "redelivery_limit"):
        gpu.claim()
        time.sleep(LEASE_S + 0.1)
        assert [(r.action, r.settle) for r in gpu.reap()] == [(expected, expected != "redeliver")]
    assert gpu.job(pid)["state"] == "failed" and gpu.claim() is None


def test_a_prompt_whose_worker_died_after_it_started_fails_once_with_worker_lost(url):
    dead, reaper = worker(url, "gpu-dead"), worker(url, "gpu-2")
    (pid,) = enqueue(dead, "a", 1)
    claim = dead.claim()
    assert dead.start(pid, claim.attempt)
    time.sleep(LEASE_S + 0.1)
    reaped = reaper.reap() + reaper.reap()
    assert [(r.prompt_id, r.action, r.started, r.settle, r.seconds) for r in reaped] == \
        [(pid, "worker_lost", True, True, 1.0)]
    assert (reaped[0].payload, reaped[0].number) == ("[{}, {}, [], null, 0]", claim.number)  # for its history entry
    assert reaper.job(pid)["state"] == "failed" and reaper.job(pid)["reason"] == "worker_lost"
    assert reaper.claim() is None


def test_a_lost_prompt_ends_as_comfyui_ends_a_failed_one_without_its_sensitive_part():
    error = lost_error("p1", "worker_lost", 1234)
    assert (error["exception_type"], error["node_id"], error["timestamp"]) == ("tenancy.worker_lost", "", 1234)
    entry = lost_entry((7, "p1", {"1": {}}, {"client_id": "a:tab"}, ["1"], {"api_key_comfy_org": "secret"}), error)
    assert entry["prompt"] == [7, "p1", {"1": {}}, {"client_id": "a:tab"}, ["1"]] and entry["outputs"] == {}
    assert entry["status"] == {"status_str": "error", "completed": False, "messages": [["execution_error", error]]}


def test_heartbeats_keep_a_long_prompt_and_a_frozen_worker_that_wakes_late_changes_nothing(url):
    gpu, other = worker(url, "gpu-1"), worker(url, "gpu-2")
    (pid,) = enqueue(gpu, "a", 1)
    claim = gpu.claim()
    gpu.start(pid, claim.attempt)
    for _ in range(8):  # twice the lease, renewed
        time.sleep(LEASE_S / 4)
        assert gpu.heartbeat(pid, claim.attempt)
        assert other.reap() == []
    time.sleep(LEASE_S + 0.1)  # frozen (SIGSTOP): no heartbeat
    assert [r.action for r in other.reap()] == ["worker_lost"]
    assert not gpu.heartbeat(pid, claim.attempt)  # it wakes: fenced, it interrupts itself
    assert not gpu.complete(pid, claim.attempt, "done")
    assert not gpu.may_settle(pid, claim.attempt)
    assert gpu.job(pid)["state"] == "failed"


def test_cancelling_a_queued_or_redelivered_prompt_ends_it_once_and_a_running_one_is_left_to_its_worker(url):
    gpu = worker(url, "gpu-1")
    first, second, third = enqueue(gpu, "a", 3)
    assert gpu.cancel(second) == (True, "a", True)
    assert gpu.cancel(second) == (False, "a", False)
    claim = gpu.claim()
    assert claim.prompt_id == first
    time.sleep(LEASE_S + 0.1)
    assert [r.action for r in gpu.reap()] == ["redeliver"]
    assert gpu.cancel(first) == (True, "a", True)
    running = gpu.claim()
    assert running.prompt_id == third
    assert gpu.cancel(third) == (False, "a", False)
    assert gpu.claim() is None and gpu.queued() == 0


def test_pending_lists_the_queued_prompts_of_every_tenant_by_number(url):
    gpu = worker(url, "gpu-1")
    enqueue(gpu, "a", 3)
    enqueue(gpu, "b", 2, weight=2)
    gpu.claim()
    pending = gpu.pending()
    assert [(n, pid) for n, pid, _body in pending] == [(1000, "a-000"), (1000, "b-001"), (2000, "a-001"),
                                                        (3000, "a-002")]
    assert all(body.startswith("[") for _n, _pid, body in pending)


def test_the_listing_reads_pending_counts_and_only_the_payloads_not_known_yet(url):
    gpu = worker(url, "gpu-1")
    enqueue(gpu, "a", 3)
    enqueue(gpu, "b", 2, weight=2)
    gpu.claim()  # a-000 or b-000: running, no longer pending
    listed = gpu.listing()
    assert [row[:2] for row in listed.pending] == [(n, pid) for n, pid, _body in gpu.pending()]
    assert len(listed.pending) == 4 and all(body.startswith("[") for _n, _pid, body in listed.pending)
    assert listed.queued == 4 and sum(q + r for q, r in listed.counts.values()) == 5
    assert sum(r for _q, r in listed.counts.values()) == 1 and set(listed.counts) == {"a", "b"}
    known = {pid for _n, pid, _body in listed.pending[:2]}
    again = gpu.listing(known)
    assert [row[:2] for row in again.pending] == [row[:2] for row in listed.pending]
    assert [body is None for _n, pid, body in again.pending] == [True, True, False, False]


def test_a_carried_prompt_comes_back_as_the_queue_item_without_its_sensitive_extra_data():
    item = (7, "p1", {"1": {"class_type": "X"}}, {"client_id": "c"}, ["1"], {"api_key_comfy_org": "secret"})
    text = carried(item, "basic", 12.5).dumps()
    assert "secret" not in text
    back = Carried.loads(text)
    assert back.queue_item(9, "p1") == (9, "p1", item[2], item[3], ["1"], {})
    assert (back.plan, back.admitted) == ("basic", 12.5)


def test_the_selector_rule_and_the_reap_rule():
    assert next_tenant([Head("a", 4000, 3, 27), Head("b", 4000, 0, 1), Head("c", 5000, 0, 1)]) == "b"
    assert next_tenant([Head("a", 4000, 0, 27), Head("b", 4000, 0, 1)]) == "b"  # the backlog's prompts all ended
    assert next_tenant([Head("b", 1, 0, 1), Head("a", 1, 0, 1)]) == "a"
    assert next_tenant([]) is None
    assert reap_action(True, 1, 5) == "worker_lost"
    assert reap_action(False, 2, 2) == "redeliver" and reap_action(False, 3, 2) == "redelivery_limit"


def test_the_lookahead_rule():
    assert in_turn([1.0, 3.0, 2.0], 1) == 0
    assert in_turn([1.0, 3.0, 2.0], 3) == 1
    assert in_turn([1.0, 3.0, 5.0], 2) == 1  # only the first two are looked at
    assert in_turn([2.0, 2.0], 2) == 0  # the earliest of equals: without estimates, each tenant's own order
    assert in_turn([0.5], 4) == 0 and in_turn([], 3) == 0
    assert renumbered([10, 20, 30, 40], 2) == [20, 30, 10]  # the third started: it takes 10, the first two move up
    assert renumbered([10, 20], 0) == [10]


def test_a_turn_starts_the_longest_of_the_tenants_next_prompts_and_the_passed_over_ones_keep_their_place(url):
    gpu = worker(url, "gpu-1", lookahead=3)
    for pid, tenant, seconds in (("a1", "a", 1.0), ("a2", "a", 4.0), ("a3", "a", 2.0), ("a4", "a", 3.0),
                                 ("b1", "b", 1.0), ("b2", "b", 1.0)):
        gpu.enqueue(pid, tenant, fair_units(1.0, 1.0), 0, "[{}, {}, [], null, 0]", seconds)
    claims = []
    while (claim := gpu.claim()) is not None:
        claims.append(claim.prompt_id)
        if claim.prompt_id == "a2":  # a's passed-over prompts are queued still: listed, in number order
            assert [(n, pid) for n, pid, _body in gpu.pending()] == [(2000, "a1"), (2000, "b2"), (3000, "a3"),
                                                                      (4000, "a4")]
        run_to_end(gpu, claim)
    # turns alternate b, a as without lookahead (ties go to b, with fewer queued); a's take its longest in view:
    # a2 took a1's number, a1 a2's
    assert claims == ["b1", "a2", "b2", "a4", "a3", "a1"]


def test_a_parked_prompt_can_be_cancelled_and_a_redelivered_one_goes_back_to_its_place(url):
    dead, alive = worker(url, "gpu-dead", lookahead=2), worker(url, "gpu-alive", lookahead=1)
    for pid, seconds in (("a1", 1.0), ("a2", 2.0), ("a3", 1.0), ("a4", 1.0)):
        dead.enqueue(pid, "a", fair_units(1.0, 1.0), 0, "[{}, {}, [], null, 0]", seconds)
    assert dead.claim().prompt_id == "a2"  # a1 parked in the retry list
    assert dead.claim().prompt_id == "a1"  # the retry list's first, a3 is as long
    time.sleep(LEASE_S + 0.1)  # both die before starting: redelivered in number order, ahead of the stream
    assert sorted(r.prompt_id for r in alive.reap()) == ["a1", "a2"]
    assert alive.cancel("a2")[0]
    assert [alive.claim().prompt_id for _ in range(3)] == ["a1", "a3", "a4"]
    assert alive.claim() is None and alive.queued() == 0


def test_lookahead_claims_follow_the_pure_rules_over_random_queues(url):
    """Enqueues and claims interleaved at random (two weights, uneven estimates): every claim is next_tenant over
    the tenants' lowest numbers, then in_turn over that tenant's queued prompts by number, renumbered after."""
    rng = random.Random(3)
    gpu = worker(url, "gpu-1", lookahead=3)
    queued: dict[str, list[tuple[int, float, str]]] = {}
    for step in range(120):
        if rng.random() < 0.55:
            tenant = rng.choice("abc")
            seconds = rng.choice([0.5, 1.0, 2.0, 3.0])
            pid = f"p{step}"
            number = gpu.enqueue(pid, tenant, fair_units(seconds, 4.0 if tenant == "a" else 1.0), 0,
                                 "[{}, {}, [], null, 0]", seconds)
            queued.setdefault(tenant, []).append((number, seconds, pid))
            continue
        heads = [Head(t, min(q)[0], 0, len(q)) for t, q in queued.items() if q]
        claim = gpu.claim()
        if not heads:
            assert claim is None
            continue
        tenant = next_tenant(heads)
        mine = sorted(queued[tenant])
        pick = in_turn([seconds for _n, seconds, _pid in mine], 3)
        assert (claim.tenant, claim.prompt_id) == (tenant, mine[pick][2])
        numbers = renumbered([n for n, _s, _pid in mine], pick)
        queued[tenant] = [(n, s, pid) for n, (_n, s, pid) in zip(numbers[:-1], mine[:pick], strict=True)] \
            + mine[pick + 1:]
        assert gpu.job(claim.prompt_id)["number"] == str(numbers[-1])
        run_to_end(gpu, claim)


def test_instances_crashing_at_random_leave_every_prompt_in_one_end_state_settled_once_and_caps_held(url):
    """Three fake instances pull until the queue is empty; some die before or after a start (they stop: no
    heartbeat, no completion); a reaper runs alongside. Every prompt ends once, is settled once, caps hold."""
    rng = random.Random(7)
    caps = {"a": 2, "b": 1, "c": 0}
    ids = []
    setup = worker(url, "setup")
    for tenant, weight in (("a", 4), ("b", 1), ("c", 2)):
        ids += enqueue(setup, tenant, 20, weight=weight, cap=caps[tenant])
    settled: Counter = Counter()
    over_cap: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def settle(pid: str) -> None:
        with lock:
            settled[pid] += 1

    def instance(index: int) -> None:
        generation = 0
        while not stop.is_set():
            gpu = worker(url, f"gpu-{index}.{generation}", max_redeliveries=3)
            claim = gpu.claim()
            if claim is None:
                time.sleep(0.02)
                continue
            running = int(gpu.redis.hget(f"{PREFIX}ten:{claim.tenant}", "running"))
            if caps[claim.tenant] and running > caps[claim.tenant]:
                over_cap.append(claim.prompt_id)
            fate = rng.random()
            if fate < 0.08:  # dies before the start; a new process comes up under a new name
                generation += 1
                continue
            gpu.start(claim.prompt_id, claim.attempt)
            if fate < 0.16:  # dies while running
                generation += 1
                continue
            if gpu.complete(claim.prompt_id, claim.attempt, "done") and gpu.may_settle(claim.prompt_id,
                                                                                         claim.attempt):
                settle(claim.prompt_id)

    def reaper() -> None:
        gpu = worker(url, "reaper", max_redeliveries=3)
        while not stop.is_set():
            for reaped in gpu.reap():
                if reaped.settle:
                    settle(reaped.prompt_id)
            time.sleep(0.05)

    threads = [threading.Thread(target=instance, args=(i,)) for i in range(3)] + [threading.Thread(target=reaper)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and sum(settled.values()) < len(ids):
        time.sleep(0.1)
    stop.set()
    for thread in threads:
        thread.join(10)
    states = {pid: setup.job(pid)["state"] for pid in ids}
    assert all(state in TERMINAL for state in states.values()), states
    assert settled == Counter(ids)
    assert not over_cap
    assert "failed" in states.values() and "done" in states.values()


def test_a_redis_restart_loses_nothing_queued_or_held(tmp_path):
    """AOF on (as the harness and DEPLOYMENT.md run Redis): after a restart the held prompt's worker renews and
    completes it, the queued ones come in the same order, each once."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        gpu = worker(server.url, "gpu-1", lease_s=5)
        ids = enqueue(gpu, "a", 4)
        held = gpu.claim()
        assert gpu.start(held.prompt_id, held.attempt)
        server.stop()
        server.start()
        assert gpu.heartbeat(held.prompt_id, held.attempt)
        assert gpu.complete(held.prompt_id, held.attempt, "done") and gpu.may_settle(held.prompt_id, held.attempt)
        rest = []
        while (claim := gpu.claim()) is not None:
            rest.append(claim.prompt_id)
            run_to_end(gpu, claim)
        assert [held.prompt_id, *rest] == ids and gpu.queued() == 0
    finally:
        server.stop()


def test_a_tenants_running_prompts_are_listed_from_any_instance_and_nobody_elses(url):
    gpus = [worker(url, f"gpu-{i}") for i in range(2)]
    ids = enqueue(gpus[0], "a", 3)
    enqueue(gpus[0], "b", 1)
    assert gpus[1].running("a") == []
    claims = [gpu.claim() for gpu in gpus]
    held = sorted((c.number, c.prompt_id, c.payload) for c in claims if c.tenant == "a")
    reader = worker(url, "reader")
    assert reader.running("a") == held and {row[1] for row in held} <= set(ids)
    assert all(row[1].startswith("b-") for row in reader.running("b"))
    first = next(c for c in claims if c.tenant == "a")
    run_to_end(next(g for g, c in zip(gpus, claims, strict=True) if c is first), first)
    assert first.prompt_id not in {row[1] for row in reader.running("a")}
    assert reader.running("nobody") == []
