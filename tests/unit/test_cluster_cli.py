"""`python -m tenancy cluster status|drain|undrain` against a real redis-server holding a cluster queue driven by
two instances (as threads would: the store client's calls).

Status: who is alive, what each runs, per-tenant depth and oldest wait. Drain: a drained instance finishes what it
holds and claims nothing new from its next heartbeat on, `cluster status` shows it draining and then drained, a
restart keeps it drained before its first heartbeat, and `cluster undrain` lets it claim again."""

from __future__ import annotations

import json
import time

import pytest
import redis

from tenancy.cli import main
from tenancy.cluster import fair_units
from tenancy.store.cluster_queue import ClusterQueue

pytestmark = pytest.mark.redis
LEASE_S = 3.0
BODY = "[{}, {}, [], null, 0]"


@pytest.fixture
def config(redis_server, tmp_path):
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushdb()
    path = tmp_path / "config.yaml"
    path.write_text(f"store: {redis_server.url}\ncluster: {{enabled: true, lease_s: {LEASE_S}, heartbeat_s: 1}}\n")
    return path


def instance(url: str, name: str) -> ClusterQueue:
    return ClusterQueue(url, name, lease_s=LEASE_S, max_redeliveries=1)


def status(capsys, config, *extra: str) -> tuple[int, str]:
    code = main(["cluster", "status", "--config", str(config), *extra])
    return code, capsys.readouterr().out


def test_status_shows_each_instance_what_it_runs_and_each_tenants_depth_and_oldest_wait(redis_server, config, capsys):
    gpu1, gpu2 = instance(redis_server.url, "gpu-1"), instance(redis_server.url, "gpu-2")
    for i in range(4):
        gpu1.enqueue(f"a-{i}", "tenant-a", fair_units(1.0, 1.0), 2, BODY, 1.0)
    gpu2.enqueue("b-0", "tenant-b", fair_units(1.0, 1.0), 0, BODY, 1.0)
    time.sleep(0.2)  # the oldest prompts have waited a measurable while
    handed = gpu2.claim()  # gpu-2 takes b's prompt (the tie goes to the tenant with fewer queued) and never beats
    running = gpu1.claim()
    assert gpu1.start(running.prompt_id, running.attempt)
    assert gpu1.heartbeat(running.prompt_id, running.attempt)
    assert (running.prompt_id, handed.prompt_id) == ("a-0", "b-0")

    code, out = status(capsys, config, "--json")
    assert code == 0
    seen = json.loads(out)
    assert seen["cluster_enabled"] is True
    assert seen["queued"] == 3
    instances = {i["name"]: i for i in seen["instances"]}
    assert set(instances) == {"gpu-1", "gpu-2"}
    assert instances["gpu-1"]["liveness"] == "alive"
    assert 0 <= instances["gpu-1"]["heartbeat_age_s"] < LEASE_S
    [runs] = instances["gpu-1"]["holds"]
    assert (runs["prompt_id"], runs["tenant"], runs["started"]) == (running.prompt_id, running.tenant, True)
    assert instances["gpu-2"]["liveness"] == "silent"
    assert instances["gpu-2"]["heartbeat_age_s"] is None
    assert [h["prompt_id"] for h in instances["gpu-2"]["holds"]] == [handed.prompt_id]
    assert instances["gpu-2"]["holds"][0]["started"] is False
    tenants = {t["tenant"]: t for t in seen["tenants"]}
    assert {name: (t["queued"], t["running"], t["cap"]) for name, t in tenants.items()} == {
        "tenant-a": (3, 1, 2), "tenant-b": (0, 1, 0)}
    assert tenants["tenant-a"]["oldest_wait_s"] >= 0.2
    assert tenants["tenant-b"]["oldest_wait_s"] is None

    code, table = status(capsys, config)
    assert code == 0
    assert "3 prompts queued in the cluster" in table
    assert f"{running.prompt_id} ({running.tenant}, running" in table
    assert "silent" in table and f"{handed.prompt_id} ({handed.tenant}, handed out" in table


def test_status_of_an_empty_queue_lists_nothing(config, capsys):
    code, out = status(capsys, config, "--json")
    assert code == 0
    assert json.loads(out) == {"cluster_enabled": True, "queued": 0, "instances": [], "tenants": []}


def test_status_needs_a_redis_store(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text("store: sqlite:///tenancy.db\n")
    assert main(["cluster", "status", "--config", str(path)]) == 2
    assert "the cluster queue lives in Redis" in capsys.readouterr().err


def cli(capsys, config, *args: str) -> tuple[int, str]:
    code = main(["cluster", *args, "--config", str(config)])
    return code, capsys.readouterr().out


def instances(capsys, config) -> dict[str, dict]:
    code, out = cli(capsys, config, "status", "--json")
    assert code == 0
    return {i["name"]: i for i in json.loads(out)["instances"]}


def test_a_drained_instance_finishes_its_prompt_claims_nothing_new_and_shows_drained(redis_server, config, capsys):
    gpu1, gpu2 = instance(redis_server.url, "gpu-1"), instance(redis_server.url, "gpu-2")
    for i in range(3):
        gpu1.enqueue(f"a-{i}", "tenant-a", fair_units(1.0, 1.0), 0, BODY, 1.0)
    running = gpu1.claim()
    assert gpu1.start(running.prompt_id, running.attempt)
    gpu2.heartbeat("", 0)  # idle, alive (an idle beat holds nothing: it answers False)

    code, out = cli(capsys, config, "drain", "gpu-1")
    assert code == 0 and "gpu-1: draining" in out
    # not seen yet (no heartbeat since): draining, and it still holds its prompt
    assert instances(capsys, config)["gpu-1"]["drain"] == "draining"
    assert gpu1.heartbeat(running.prompt_id, running.attempt)  # it sees the request: its lease is still renewed
    assert gpu1.draining is True
    assert gpu1.claim() is None  # nothing new, though two prompts are queued
    seen = instances(capsys, config)
    assert seen["gpu-1"]["drain"] == "draining" and len(seen["gpu-1"]["holds"]) == 1  # it finishes what it runs
    assert seen["gpu-2"]["drain"] == ""
    assert gpu1.complete(running.prompt_id, running.attempt, "done")
    assert instances(capsys, config)["gpu-1"]["drain"] == "drained"
    code, table = cli(capsys, config, "status")
    assert "drained" in table

    taken = gpu2.claim()  # its peers take the queue
    assert taken is not None and taken.prompt_id == "a-1"

    restarted = instance(redis_server.url, "gpu-1")  # a restart of the drained instance: before any heartbeat
    assert restarted.claim() is None

    code, out = cli(capsys, config, "undrain", "gpu-1")
    assert code == 0 and "gpu-1: undrained" in out
    restarted.heartbeat("", 0)
    assert restarted.draining is False
    again = restarted.claim()
    assert again is not None and again.prompt_id == "a-2"
    assert instances(capsys, config)["gpu-1"]["drain"] == ""
    code, out = cli(capsys, config, "undrain", "gpu-1")
    assert "was not drained" in out


def test_a_drained_instance_that_stopped_stays_listed_until_undrained(redis_server, config, capsys):
    gone = instance(redis_server.url, "gpu-9")
    gone.heartbeat("", 0)
    cli(capsys, config, "drain", "gpu-9")
    gone.heartbeat("", 0)
    alive = instances(capsys, config)["gpu-9"]
    assert (alive["liveness"], alive["drain"], alive["holds"]) == ("alive", "drained", [])
    with redis.Redis.from_url(redis_server.url) as client:
        client.delete("tn:{cq}:inst:gpu-9")  # its heartbeat key expired: the instance stopped
    stopped = instances(capsys, config)["gpu-9"]
    assert (stopped["liveness"], stopped["drain"], stopped["heartbeat_age_s"]) == ("stopped", "drained", None)
    cli(capsys, config, "undrain", "gpu-9")
    assert "gpu-9" not in instances(capsys, config)


def test_drain_needs_a_redis_store(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text("store: sqlite:///tenancy.db\n")
    assert main(["cluster", "drain", "gpu-1", "--config", str(path)]) == 2
    assert "the cluster queue lives in Redis" in capsys.readouterr().err
