"""Model affinity (`cluster.affinity_s`) with two real guarded ComfyUI processes on one redis-server: the guard
finds a prompt's model in a combo listing ComfyUI's checkpoints folder, a worker keeps serving the model it holds
while the other tenant is within the bound, and switches once the other tenant is further behind than the bound.

The test node pack's TenancyTestModel simulates a model load inside ComfyUI: each process holds one model, a run
on another model loads it first and logs `load:<port>:<model>:<tag>` (TENANCY_TEST_RUN_LOG). Loads are counted
from that log; order, numbers and the queue's warm flags from the job records. Nothing is timed."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tenancy.affinity import unpacked
from tests.harness.client import ComfyClient
from tests.harness.cluster import CLUSTER, ended, job, owner_of, running_cluster, sleep
from tests.harness.waiting import wait_until

pytestmark = pytest.mark.comfy
BOUND_S = 2.5  # fair-queue seconds: with prompts of 1000 units (1 s estimate, weight 1), two and a half prompts
MODELS = ("a.safetensors", "b.safetensors")
TENANTS = {"light": ("tenant-light", MODELS[0]), "quota30": ("tenant-q", MODELS[1])}  # weight 1 each


@pytest.fixture(scope="module")
def runs_log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("affinity-runs") / "runs.log"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, runs_log):
    with running_cluster(tmp_path_factory, "affinity", 2, {"cluster": {**CLUSTER, "affinity_s": BOUND_S}},
                         env={"TENANCY_TEST_RUN_LOG": str(runs_log)}) as (workers, seeded, client):
        for worker in workers:  # before the first prompt: the catalogue sees the folder's files in the combo
            folder = worker.base / "models" / "checkpoints"
            folder.mkdir(parents=True, exist_ok=True)
            for name in MODELS:
                (folder / name).write_bytes(b"")
        yield workers, seeded, client


def on_model(model: str, tag: str) -> dict:
    return {"1": {"class_type": "TenancyTestModel",
                  "inputs": {"ckpt_name": model, "load_s": 0.5, "seconds": 0.2, "tag": tag}}}


def loads(log: Path, tags: set[str]) -> dict[str, list[str]]:
    """port -> the tags of the runs that loaded a model there, in order."""
    found: dict[str, list[str]] = {}
    for line in (log.read_text().splitlines() if log.exists() else ()):
        if line.startswith("load:"):
            _load, port, _model, tag = line.split(":", 3)
            if tag in tags:
                found.setdefault(port, []).append(tag)
    return found


def queue_both(workers, seeded, count: int, burst: str) -> dict[str, str]:
    """`count` prompts of each tenant on its own model, the tenants alternating, dealt over the instances; prompt
    id -> tag (`<burst>-<tenant>-<model's first letter><its n-th>-<place in the burst>`)."""
    ids = {}
    for i in range(count):
        for name, (_tenant, model) in TENANTS.items():
            tag = f"{burst}-{name}-{model[0]}{i + 1}-{len(ids)}"
            answer = ComfyClient(workers[len(ids) % 2].url, seeded.keys[name]).queue(on_model(model, tag))
            assert answer.status_code == 200, answer.text
            ids[answer.json()["prompt_id"]] = tag
    return ids


def replay(client, workers, burst: dict[str, str]) -> list[tuple[str, str, bool]]:
    """Walk the burst's hand-outs in the cluster's order (all of it queued before the first): each started within
    the bound of the lowest number waiting; after a worker's first hand-out of the burst (what it held before is
    the earlier tests'), each was warm (its model the one its worker ran last) exactly when the queue flagged it
    so, and whenever a tenant within the bound had a warm next prompt. Returns (tag, port, warm) per hand-out."""
    jobs = wait_until(lambda: ended(client, list(burst)), timeout=120, what="the burst")
    assert {j["state"] for j in jobs.values()} == {"done"}
    assert max(int(j["created"]) for j in jobs.values()) <= min(int(j["claimed"]) for j in jobs.values())
    order = sorted(burst, key=lambda pid: int(jobs[pid]["order"]))
    waiting, held, seen = set(order), {}, []
    for pid in order:
        record, port = jobs[pid], str(owner_of(workers, jobs[pid]).port)
        heads: dict[str, tuple[int, tuple]] = {}
        for other in waiting:
            tenant, number = jobs[other]["tenant"], int(jobs[other]["number"])
            if tenant not in heads or number < heads[tenant][0]:
                heads[tenant] = (number, unpacked(jobs[other]["models"]))
        reach = min(number for number, _models in heads.values()) + BOUND_S * 1000
        assert int(record["number"]) <= reach, (burst[pid], heads)
        models = unpacked(record["models"])
        assert len(models) == 1 and models[0].startswith("checkpoints/")  # found in the combo, at admission
        warm = record["warm"] == "1"
        if port in held:
            assert warm == (held[port] == models), burst[pid]
            assert warm or not any(number <= reach and m == held[port] for number, m in heads.values()), \
                (burst[pid], heads, held)
        held[port] = models
        waiting.remove(pid)
        seen.append((burst[pid], port, warm))
    return seen


def claims(worker, seeded) -> dict[str, float]:
    """The instance's tenancy_cluster_claims_total by its `models` label."""
    text = ComfyClient(worker.url, seeded.keys["admin"]).get("/tenancy/metrics").text
    return {sample.labels["models"]: sample.value for family in text_string_to_metric_families(text)
            if family.name == "tenancy_cluster_claims" for sample in family.samples if sample.name.endswith("_total")}


def test_one_worker_keeps_its_model_until_the_other_tenant_is_further_behind_than_the_bound(cluster, runs_log):
    """One worker held by an operator's long prompt; the other takes both tenants' six prompts each (queued while
    a short one holds it): a1 a2 a3 (b1 is then 2500 behind: the bound), b1 ... b6, a4 a5 a6: three loads where
    fair order's alternation loads for every prompt."""
    workers, seeded, client = cluster
    admin = ComfyClient(workers[0].url, seeded.keys["admin"])
    long = admin.queue(sleep(300.0, "affinity-long")).json()["prompt_id"]
    held_by = owner_of(workers, wait_until(lambda: job(client, long).get("state") == "running" and job(client, long),
                                           what="the long prompt"))
    free = next(w for w in workers if w is not held_by)
    before = claims(free, seeded)
    short = admin.queue(sleep(4.0, "affinity-short")).json()["prompt_id"]
    wait_until(lambda: job(client, short).get("state") == "running", what="the short prompt")
    burst = queue_both(workers, seeded, 6, "one")
    seen = replay(client, workers, burst)
    assert {port for _tag, port, _warm in seen} == {str(free.port)}
    assert [tag.split("-")[2] for tag, _port, _warm in seen] == \
        ["a1", "a2", "a3", "b1", "b2", "b3", "b4", "b5", "b6", "a4", "a5", "a6"]
    cold = [tag for tag, _port, warm in seen if not warm]
    assert loads(runs_log, set(burst.values())) == {str(free.port): cold}
    assert [tag.split("-")[2] for tag in cold] == ["a1", "b1", "a4"]
    after = claims(free, seeded)  # its metric says the same (the short prompt names no model)
    assert {kind: after.get(kind, 0) - before.get(kind, 0) for kind in after} == {"warm": 9, "cold": 3, "none": 1}
    assert ComfyClient(held_by.url, seeded.keys["admin"]).post("/interrupt", json={"prompt_id": long}).ok
    wait_until(lambda: job(client, long).get("state") in ("interrupted", "error"), what="the long prompt's end")


def test_two_workers_each_keep_a_tenants_model_and_load_only_what_the_queue_says_they_do(cluster, runs_log):
    """Both workers busy while both tenants queue eight prompts each: every hand-out holds to the bound and to
    affinity (replay), and the loads the processes made are exactly the hand-outs the queue saw as cold."""
    workers, seeded, client = cluster
    blockers = [ComfyClient(w.url, seeded.keys["admin"]).queue(sleep(4.0, f"affinity-block{i}")).json()["prompt_id"]
                for i, w in enumerate(workers)]
    wait_until(lambda: all(job(client, pid).get("state") == "running" for pid in blockers), what="the blockers")
    burst = queue_both(workers, seeded, 8, "two")
    seen = replay(client, workers, burst)
    found = loads(runs_log, set(burst.values()))
    cold = {port: [tag for tag, p, warm in seen if p == port and not warm] for _tag, port, _warm in seen}
    assert found == {port: tags for port, tags in cold.items() if tags}
    assert sum(map(len, found.values())) <= len(burst) // 2  # most hand-outs loaded nothing
