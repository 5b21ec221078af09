"""Operators and the cluster, with two real guarded ComfyUI processes on one redis-server and the cluster queue on:
/tenancy/metrics and the admin API show each instance, its liveness and what it runs, and each tenant's queue
depth and wait; an instance drained (admin API or `cluster drain`) finishes its prompt, takes nothing new, and stops
at no cost; an API-node token travels sealed to the instance that runs the prompt; a Redis out of memory is a 503,
not a 500."""

from __future__ import annotations

import hashlib
import json
from urllib.parse import quote

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tenancy.cli import main
from tests.harness.client import ComfyClient
from tests.harness.cluster import JOB, ended, job, running_cluster, sleep
from tests.harness.waiting import wait_until

pytestmark = pytest.mark.comfy
TOKEN, API_KEY = "comfy-org-token-5e1f0c", "comfy-org-key-93ab77"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A maxmemory (noeviction) the OOM test lowers and restores."""
    with running_cluster(tmp_path_factory, "ops", 2, {}, redis_options={"maxmemory": "256mb"}) as cluster:
        yield cluster


def admin(worker, seeded) -> ComfyClient:
    return ComfyClient(worker.url, seeded.keys["admin"])


def status(worker, seeded) -> dict:
    answer = admin(worker, seeded).get("/tenancy/admin/cluster")
    assert answer.status_code == 200, answer.text
    return answer.json()


def name_of(worker, seeded) -> str:
    """The instance's name in the queue: the one its own admin API calls this instance."""
    return status(worker, seeded)["this_instance"]


def drain_of(worker, seeded, name: str) -> str | None:
    return next((i["drain"] for i in status(worker, seeded)["instances"] if i["name"] == name), None)


def drain(worker, seeded, name: str, on: bool = True) -> None:
    answer = admin(worker, seeded).post(f"/tenancy/admin/cluster/instances/{quote(name, safe='')}/"
                                        f"{'drain' if on else 'undrain'}")
    assert answer.status_code == 200, answer.text


def metrics(worker, seeded) -> dict[tuple, float]:
    text = admin(worker, seeded).get("/tenancy/metrics").text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name.startswith("tenancy_cluster_")}


def test_metrics_and_the_admin_api_show_each_instance_what_it_runs_and_each_tenants_queue(cluster):
    workers, seeded, client = cluster
    names = [name_of(w, seeded) for w in workers]
    sender = ComfyClient(workers[0].url, seeded.keys["light"])
    ids = [sender.queue(sleep(4.0, f"seen{i}")).json()["prompt_id"] for i in range(3)]
    running = wait_until(lambda: [job(client, pid) for pid in ids if job(client, pid).get("started") == "1"]
                         if sum(job(client, pid).get("started") == "1" for pid in ids) == 2 else None,
                         what="two prompts running")
    seen = metrics(workers[1], seeded)  # asked at an instance other than the one that accepted them
    assert seen[("tenancy_cluster_up", ())] == 1
    assert seen[("tenancy_cluster_queued_prompts", ())] == 1
    for name in names:
        assert seen[("tenancy_cluster_instance_alive", (("cluster_instance", name),))] == 1
        assert 0 <= seen[("tenancy_cluster_instance_heartbeat_age_seconds", (("cluster_instance", name),))] < 3
        assert seen[("tenancy_cluster_instance_draining", (("cluster_instance", name),))] == 0
    assert sorted(j["owner"] for j in running) == sorted(names)
    for j in running:
        key = ("tenancy_cluster_instance_prompts", (("cluster_instance", j["owner"]), ("state", "running"),
                                                   ("tenant", "tenant-light")))
        assert seen[key] == 1
    assert seen[("tenancy_cluster_tenant_queued", (("tenant", "tenant-light"),))] == 1
    assert seen[("tenancy_cluster_tenant_running", (("tenant", "tenant-light"),))] == 2
    assert seen[("tenancy_cluster_tenant_oldest_wait_seconds", (("tenant", "tenant-light"),))] > 0

    answer = status(workers[0], seeded)
    assert answer["enabled"] is True and answer["queued"] == 1
    instances = {i["name"]: i for i in answer["instances"]}
    assert set(instances) == set(names)
    for j in running:
        [held] = instances[j["owner"]]["holds"]
        assert (held["tenant"], held["started"]) == ("tenant-light", True)
        assert held["prompt_id"] in ids
    [light] = [t for t in answer["tenants"] if t["tenant"] == "tenant-light"]
    assert (light["queued"], light["running"]) == (1, 2) and light["oldest_wait_s"] > 0
    tenant_view = ComfyClient(workers[0].url, seeded.keys["light"]).get("/tenancy/admin/cluster")
    assert tenant_view.status_code == 403
    assert {j["state"] for j in wait_until(lambda: ended(client, ids), what="the prompts").values()} == {"done"}


def test_an_api_node_token_travels_sealed_to_the_instance_that_runs_the_prompt(cluster):
    workers, seeded, client = cluster
    accepting, running = (name_of(w, seeded) for w in workers)
    drain(workers[0], seeded, accepting)  # the instance that accepts it runs nothing: the prompt must travel
    wait_until(lambda: drain_of(workers[1], seeded, accepting) == "drained", what="the drain acknowledged")
    blocker = ComfyClient(workers[1].url, seeded.keys["light"]).queue(sleep(2.0, "blocker")).json()["prompt_id"]
    wait_until(lambda: job(client, blocker).get("started") == "1", what="the blocker")
    answer = ComfyClient(workers[0].url, seeded.keys["light"]).queue(
        {"1": {"class_type": "TenancyTestSecrets", "inputs": {"tag": "token"}}},
        extra_data={"auth_token_comfy_org": TOKEN, "api_key_comfy_org": API_KEY})
    assert answer.status_code == 200, answer.text
    prompt_id = answer.json()["prompt_id"]
    body = client.get(f"tn:{{cq}}:body:{prompt_id}")  # queued behind the blocker: what Redis holds
    assert job(client, prompt_id)["state"] == "queued"
    assert body and TOKEN not in body and API_KEY not in body and '"v1.' in body
    done = wait_until(lambda: ended(client, [prompt_id]), what="the token prompt")[prompt_id]
    assert (done["state"], done["owner"]) == ("done", running)
    history = ComfyClient(workers[1].url, seeded.keys["light"]).get(f"/history/{prompt_id}").json()
    digest = {value: hashlib.sha256(value.encode()).hexdigest()[:16] for value in (TOKEN, API_KEY)}
    assert history[prompt_id]["outputs"]["1"]["text"] == [f"auth={digest[TOKEN]} api_key={digest[API_KEY]}"]
    assert TOKEN not in json.dumps(history) and API_KEY not in json.dumps(history)
    for worker in workers:
        assert TOKEN not in worker.log_text() and API_KEY not in worker.log_text()
    drain(workers[0], seeded, accepting, on=False)
    wait_until(lambda: drain_of(workers[0], seeded, accepting) == "", what="the undrain")


def test_a_drained_instance_finishes_its_prompt_takes_nothing_new_and_takes_work_again_when_undrained(cluster,
                                                                                                     capsys):
    workers, seeded, client = cluster
    names = [name_of(w, seeded) for w in workers]
    sender = ComfyClient(workers[0].url, seeded.keys["light"])
    long = [sender.queue(sleep(2.5, f"long{i}")).json()["prompt_id"] for i in range(2)]
    jobs = wait_until(lambda: [job(client, pid) for pid in long]
                      if all(job(client, pid).get("started") == "1" for pid in long) else None, what="both running")
    assert sorted(j["owner"] for j in jobs) == sorted(names)
    drained = names[1]
    drain(workers[0], seeded, drained)
    assert drain_of(workers[1], seeded, drained) == "draining"  # it still runs its prompt
    short = [sender.queue(sleep(0.3, f"short{i}")).json()["prompt_id"] for i in range(3)]
    wait_until(lambda: drain_of(workers[0], seeded, drained) == "drained", what="the drained instance idle")
    finished = wait_until(lambda: ended(client, [*long, *short]), what="every prompt")
    assert {j["state"] for j in finished.values()} == {"done"}  # its own prompt finished, not failed
    assert {finished[pid]["owner"] for pid in short} == {names[0]}
    seen = metrics(workers[0], seeded)
    assert seen[("tenancy_cluster_instance_drained", (("cluster_instance", drained),))] == 1
    assert seen[("tenancy_cluster_instance_draining", (("cluster_instance", names[0]),))] == 0
    assert main(["cluster", "status", "--config", str(seeded.config_path)]) == 0
    assert "drained" in next(line for line in capsys.readouterr().out.splitlines() if drained in line)

    assert main(["cluster", "undrain", drained, "--config", str(seeded.config_path)]) == 0
    assert "undrained" in capsys.readouterr().out
    again = [sender.queue(sleep(3.0, f"again{i}")).json()["prompt_id"] for i in range(2)]
    finished = wait_until(lambda: ended(client, again), what="the prompts after the undrain")
    assert {j["owner"] for j in finished.values()} == set(names)


def test_a_redis_out_of_memory_answers_503_store_unavailable_not_500(cluster):
    workers, seeded, client = cluster
    sender = ComfyClient(workers[0].url, seeded.keys["light"])
    client.config_set("maxmemory", "1")  # every write refused (noeviction): OOM
    try:
        answer = sender.queue(sleep(0.1, "oom"))
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["type"] == "store_unavailable"
        assert status(workers[1], seeded)["enabled"] is True  # reads still answer
    finally:
        client.config_set("maxmemory", "256mb")
    wait_until(lambda: all(ComfyClient(w.url).get("/tenancy/health").status_code == 200 for w in workers),
               what="both instances healthy again")
    assert client.zcard("tn:{tenant-light}:active") == 0  # nothing was held for the refused prompt


def test_a_drained_idle_instance_stops_at_no_cost(cluster):
    workers, seeded, client = cluster
    names = [name_of(w, seeded) for w in workers]
    drain(workers[1], seeded, names[1])
    wait_until(lambda: drain_of(workers[0], seeded, names[1]) == "drained", what="drained")
    workers[1].stop()  # a graceful stop
    stopped = wait_until(lambda: next((i for i in status(workers[0], seeded)["instances"]
                                       if i["name"] == names[1] and i["liveness"] == "stopped"), None),
                         timeout=10, what="its heartbeat key to expire (lease_s)")
    assert stopped["drain"] == "drained" and stopped["holds"] == []
    sender = ComfyClient(workers[0].url, seeded.keys["light"])
    ids = [sender.queue(sleep(0.2, f"after{i}")).json()["prompt_id"] for i in range(2)]
    finished = wait_until(lambda: ended(client, ids), what="the survivor")
    assert {(j["state"], j["owner"]) for j in finished.values()} == {("done", names[0])}
    lost = [key for key in client.scan_iter(f"{JOB}*") if client.hget(key, "state") == "failed"]
    assert lost == []
