"""Three real guarded ComfyUI processes on one redis-server with the cluster queue on: a tenant's websocket on one
instance gets the events of its prompts wherever they run (and another tenant's sockets nothing of them), its
queue count follows changes made on other instances, a queued prompt is deleted from any instance, and an
interrupt sent to any instance stops exactly the prompt it names (or the tenant's running one) where it runs."""

from __future__ import annotations

import json
import time

import pytest
import websocket

from tests.harness.client import ComfyClient, text_messages
from tests.harness.cluster import drained, job, owner_of, running_cluster, sleep
from tests.harness.waiting import wait_until

pytestmark = pytest.mark.comfy
PREVIEW_IMAGE = 1  # ComfyUI's BinaryEventTypes.PREVIEW_IMAGE


def sleep_preview_save(seconds: float, tag: str) -> dict:
    return {**sleep(seconds, tag),
            "2": {"class_type": "TenancyTestPreview", "inputs": {"tag": tag}},
            "3": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
            "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "relay/out"}}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running_cluster(tmp_path_factory, "relay", 3, {}) as cluster:
        yield cluster


def connect(client: ComfyClient, client_id: str) -> tuple[websocket.WebSocket, str]:
    socket = client.websocket(client_id)
    first = json.loads(socket.recv())
    assert first["type"] == "status"
    return socket, first["data"]["sid"]


def read_until(socket: websocket.WebSocket, done, timeout: float = 60.0) -> list:
    """Messages (text parsed, binary as bytes) until `done(messages)` holds; AssertionError at the deadline."""
    received, deadline = [], time.monotonic() + timeout
    while not done(received):
        left = deadline - time.monotonic()
        if left <= 0:
            texts = [m for m in received if not isinstance(m, bytes)]
            raise AssertionError(f"not within {timeout} s; received {texts}")
        socket.settimeout(left)
        try:
            message = socket.recv()
        except websocket.WebSocketTimeoutException:
            continue
        received.append(json.loads(message) if isinstance(message, str) else message)
    return received


def of_prompt(messages: list, event: str, prompt_id: str) -> list[dict]:
    return [m for m in messages if isinstance(m, dict) and m["type"] == event
            and m["data"].get("prompt_id") == prompt_id]


def finished(messages: list, prompt_id: str) -> bool:
    """ComfyUI's last message about a prompt: `executing` with no node, after its task is done."""
    return any(m["data"]["node"] is None for m in of_prompt(messages, "executing", prompt_id))


def test_a_sockets_prompts_report_to_it_wherever_they_run_and_to_nobody_else(cluster):
    workers, seeded, client = cluster
    light = ComfyClient(workers[0].url, seeded.keys["light"])
    socket, sid = connect(light, "relay")
    # another tenant, on every instance, with the same client id (it is given its own namespace)
    spies = [connect(ComfyClient(w.url, seeded.keys["heavy"]), "relay") for w in workers]
    assert all(spy_sid.startswith("tenant-heavy:") for _s, spy_sid in spies)
    ids = []
    for i in range(3):  # three idle workers, each pulling one at a time: they run on all three
        answer = light.queue(sleep_preview_save(1.5, f"relay{i}"), client_id=sid)
        assert answer.status_code == 200, answer.text
        ids.append(answer.json()["prompt_id"])
    messages = read_until(socket, lambda got: all(finished(got, pid) for pid in ids))
    jobs = {pid: job(client, pid) for pid in ids}
    elsewhere = [pid for pid in ids if owner_of(workers, jobs[pid]) is not workers[0]]
    assert len(elsewhere) >= 2, jobs  # the point of the test: prompts that ran on an instance without the socket
    for pid in ids:
        assert of_prompt(messages, "execution_start", pid) and of_prompt(messages, "execution_success", pid)
        assert of_prompt(messages, "progress", pid)
        executed = {m["data"]["node"]: m["data"]["output"] for m in of_prompt(messages, "executed", pid)}
        assert set(executed) == {"1", "2", "4"}
        saved = executed["4"]["images"][0]
        assert saved["subfolder"] == "relay" and saved["type"] == "output"  # the tenant's own names
        assert "tenants/" not in json.dumps(executed)
    previews = [m for m in messages if isinstance(m, bytes)]
    assert len(previews) == 3  # one per prompt, rendered where it ran: event, image type (JPEG), the JPEG
    assert all(m[:8] == bytes([0, 0, 0, PREVIEW_IMAGE, 0, 0, 0, 1]) and m[8:10] == b"\xff\xd8" for m in previews)
    socket.close()
    for spy, _sid in spies:
        # relayed messages travel in order behind the execution_success already read; 1 s covers the delivery
        seen = text_messages(spy, 1.0)
        spy.settimeout(0.01)
        assert not [m for m in seen if m["type"] != "status"], seen
        assert all(m["data"]["status"]["exec_info"]["queue_remaining"] == 0 for m in seen)  # its own queue
        spy.close()


def test_a_client_ids_newer_socket_on_another_instance_gets_its_messages_as_on_one_comfyui(cluster):
    """On one ComfyUI a newer socket of a client id replaces the older. Here the older lingers, open, on instance 0
    (a page kept in a browser's back/forward cache did this; so does a half-open socket after the editor reconnected
    through the balancer) and the newer opens on instance 1; a prompt of that client id runs on instance 0 (the
    others drained): its messages reach the newer socket, not the one instance 0 holds."""
    workers, seeded, client = cluster
    here = ComfyClient(workers[0].url, seeded.keys["light"])
    older, sid = connect(here, "reopened")
    newer, newer_sid = connect(ComfyClient(workers[1].url, seeded.keys["light"]), "reopened")
    assert newer_sid == sid
    try:
        with drained(ComfyClient(workers[1].url, seeded.keys["admin"])), \
                drained(ComfyClient(workers[2].url, seeded.keys["admin"])):
            answer = here.queue(sleep_preview_save(0.2, "reopened"), client_id="reopened")
            assert answer.status_code == 200, answer.text
            pid = answer.json()["prompt_id"]
            messages = read_until(newer, lambda got: finished(got, pid))
        assert owner_of(workers, job(client, pid)) is workers[0]
        assert of_prompt(messages, "execution_success", pid) and of_prompt(messages, "executed", pid)
    finally:
        older.close()
        newer.close()


def test_queue_changes_anywhere_reach_the_status_and_deletes_work_from_any_instance(cluster):
    """Every worker busy with an operator's long prompt: the tenant's prompts queued at instance 1 and deleted at
    instance 2 change nothing in instance 0's own queue, yet its socket there sees its count follow; the blockers
    are then interrupted by prompt id from instance 0, each where it runs."""
    workers, seeded, client = cluster
    operator = ComfyClient(workers[0].url, seeded.keys["admin"])
    blockers = [operator.queue(sleep(120.0, f"block{i}")).json()["prompt_id"] for i in range(3)]
    records = wait_until(lambda: all(job(client, pid).get("started") == "1" for pid in blockers)
                         and [job(client, pid) for pid in blockers], what="a blocker on every worker")
    assert {owner_of(workers, r).port for r in records} == {w.port for w in workers}
    socket, sid = connect(ComfyClient(workers[0].url, seeded.keys["light"]), "status")
    light = ComfyClient(workers[1].url, seeded.keys["light"])
    kept, deleted = (light.queue(sleep(0.2, tag), client_id=sid).json()["prompt_id"] for tag in ("kept", "deleted"))

    def remaining(messages: list) -> list[int]:
        return [m["data"]["status"]["exec_info"]["queue_remaining"] for m in messages
                if isinstance(m, dict) and m["type"] == "status"]

    read_until(socket, lambda got: 2 in remaining(got), timeout=30)
    assert all(job(client, pid)["state"] == "running" for pid in blockers)  # nothing ended on instance 0 yet
    answer = ComfyClient(workers[2].url, seeded.keys["light"]).post("/queue", json={"delete": [deleted]})
    assert answer.status_code == 200, answer.text
    assert job(client, deleted)["state"] == "cancelled"
    read_until(socket, lambda got: 1 in remaining(got), timeout=30)
    refund = wait_until(lambda: client.hgetall(f"tn:{{tenant-light}}:res:{deleted}").get("state") == "settled"
                        and client.hgetall(f"tn:{{tenant-light}}:res:{deleted}"), what="the refund")
    assert refund["outcome"] == "cancelled"

    for pid in blockers:  # an operator's interrupt that names a prompt reaches it on its instance
        assert operator.post("/interrupt", json={"prompt_id": pid}).status_code == 200
    ended = wait_until(lambda: all(job(client, pid)["state"] != "running" for pid in blockers)
                       and [job(client, pid)["state"] for pid in blockers], what="the blockers interrupted")
    assert ended == ["interrupted"] * 3
    messages = read_until(socket, lambda got: finished(got, kept) and 0 in remaining(got))
    assert of_prompt(messages, "execution_success", kept)
    assert job(client, kept)["state"] == "done" and job(client, deleted)["state"] == "cancelled"
    assert not of_prompt(messages, "execution_start", deleted)
    socket.close()


def test_an_interrupt_sent_to_any_instance_stops_exactly_that_prompt_where_it_runs(cluster):
    workers, seeded, client = cluster
    light = ComfyClient(workers[0].url, seeded.keys["light"])
    doomed = light.queue(sleep(120.0, "doomed")).json()["prompt_id"]
    sibling = light.queue(sleep(4.0, "sibling")).json()["prompt_id"]
    both = wait_until(lambda: all(job(client, pid).get("started") == "1" for pid in (doomed, sibling))
                      and {pid: job(client, pid) for pid in (doomed, sibling)}, what="both running")
    busy = {owner_of(workers, record).port for record in both.values()}
    idle = next(w for w in workers if w.port not in busy)
    asked = ComfyClient(idle.url, seeded.keys["light"])
    heavy = ComfyClient(idle.url, seeded.keys["heavy"])
    refused = heavy.post("/interrupt", json={"prompt_id": doomed})
    assert refused.status_code == 403 and refused.json()["error"]["type"] == "not_owner"
    assert asked.post("/interrupt", json={"prompt_id": doomed}).status_code == 200
    assert wait_until(lambda: job(client, doomed)["state"] != "running" and job(client, doomed),
                      what="the doomed prompt")["state"] == "interrupted"
    assert wait_until(lambda: job(client, sibling)["state"] != "running" and job(client, sibling),
                      what="the sibling")["state"] == "done"
    place = owner_of(workers, both[doomed])
    entry = ComfyClient(place.url, seeded.keys["light"]).get(f"/history/{doomed}").json()[doomed]
    assert "execution_interrupted" in [event for event, _data in entry["status"]["messages"]]

    # without a prompt id: the tenant's running prompt, wherever it runs
    lone = light.queue(sleep(120.0, "lone")).json()["prompt_id"]
    record = wait_until(lambda: job(client, lone).get("started") == "1" and job(client, lone), what="lone running")
    elsewhere = next(w for w in workers if w is not owner_of(workers, record))
    assert heavy.post("/interrupt").status_code == 200  # another tenant's bare interrupt: its own prompts, none
    assert ComfyClient(elsewhere.url, seeded.keys["light"]).post("/interrupt").status_code == 200
    assert wait_until(lambda: job(client, lone)["state"] != "running" and job(client, lone),
                      what="the lone prompt")["state"] == "interrupted"


def test_a_job_cancel_sent_to_any_instance_stops_the_job_where_it_runs(cluster):
    """ComfyUI 0.33's /api/jobs cancel: one job, then a batch of a running and a queued one."""
    workers, seeded, client = cluster
    light = ComfyClient(workers[0].url, seeded.keys["light"])
    if light.get("/api/jobs").status_code == 404:
        pytest.skip("this ComfyUI has no /api/jobs")
    single = light.queue(sleep(120.0, "single")).json()["prompt_id"]
    record = wait_until(lambda: job(client, single).get("started") == "1" and job(client, single), what="running")
    elsewhere = ComfyClient(next(w for w in workers if w is not owner_of(workers, record)).url, seeded.keys["light"])
    assert ComfyClient(elsewhere.url, seeded.keys["heavy"]).post(f"/api/jobs/{single}/cancel").status_code == 404
    assert elsewhere.post(f"/api/jobs/{single}/cancel").json() == {"cancelled": True}
    assert wait_until(lambda: job(client, single)["state"] != "running" and job(client, single),
                      what="the cancelled job")["state"] == "interrupted"

    blockers = [light.queue(sleep(120.0, f"batch{i}")).json()["prompt_id"] for i in range(3)]
    wait_until(lambda: all(job(client, pid).get("started") == "1" for pid in blockers), what="three running")
    queued = light.queue(sleep(0.2, "queued")).json()["prompt_id"]
    answer = elsewhere.post("/api/jobs/cancel", json={"job_ids": [*blockers, queued]})
    assert answer.status_code == 200 and answer.json() == {"cancelled": True}
    states = wait_until(lambda: all(job(client, pid)["state"] != "running" for pid in blockers)
                        and [job(client, pid)["state"] for pid in [*blockers, queued]], what="the batch")
    assert states == ["interrupted", "interrupted", "interrupted", "cancelled"]
