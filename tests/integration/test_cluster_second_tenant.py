"""A second tenant attacking a first one across the instances of a cluster: three real guarded ComfyUI processes
with the cluster queue on (one redis-server) and a real S3 server (SeaweedFS). The attacker knows the victim's
prompt ids, client id, file names and refs (as if it had read them over the victim's shoulder) and uses every
instance: it may not hear the victim's socket, stop, delete or take over the victim's prompts, read its history,
jobs, outputs, previews or uploads, or replace an upload in the bucket. Each attack is refused (with the guard's
reason where the guard refuses; a 404 of ComfyUI's own where the name leads into the attacker's own folders) and
the victim's prompts, files and history are as they were."""

from __future__ import annotations

import io
import json
import random
from contextlib import ExitStack

import pytest
from PIL import Image

from tenancy.config import DEFAULT_PLANS
from tests.harness.client import ComfyClient, text_messages
from tests.harness.cluster import drained, ended, job, owner_of, running_cluster, sleep
from tests.harness.seaweedfs import BUCKET
from tests.harness.waiting import wait_until

pytestmark = pytest.mark.comfy
PREFIX = "attack/"
VICTIM, ATTACKER = "light", "heavy"
TAB = "victim-tab"  # the victim's client id
VICTIM_INPUT = f"{PREFIX}tenants/tenant-light/input/"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, seaweedfs):
    outputs = seaweedfs.outputs(prefix=PREFIX)
    plans = {**DEFAULT_PLANS, "heavy": {"uploads_per_minute": 100000}}  # the attacker uploads much at once
    with running_cluster(tmp_path_factory, "attack", 3, {"outputs": outputs, "plans": plans}) as cluster:
        yield cluster


def clients(cluster, who: str) -> list[ComfyClient]:
    workers, seeded, _ = cluster
    return [ComfyClient(worker.url, seeded.keys[who]) for worker in workers]


def operator(cluster, index: int) -> ComfyClient:
    workers, seeded, _ = cluster
    return ComfyClient(workers[index].url, seeded.keys["admin"])


def image() -> tuple[bytes, bytes]:
    picture = Image.new("RGB", (6, 4))
    picture.putdata([tuple(random.randrange(256) for _ in range(3)) for _ in range(24)])
    data = io.BytesIO()
    picture.save(data, format="PNG")
    return data.getvalue(), picture.tobytes()


def pixels_of(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as picture:
        return picture.convert("RGB").tobytes()


def queued(client: ComfyClient, workflow: dict, **body) -> str:
    answer = client.queue(workflow, **body)
    assert answer.status_code == 200, answer.text
    return answer.json()["prompt_id"]


def refused(answer, status: int, reason: str | None = None) -> None:
    """The answer is a refusal: `status`, and the guard's reason when one is given."""
    assert answer.status_code == status, answer.text
    if reason is not None:
        assert answer.json()["error"]["type"] == reason, answer.text


def loading(name: str, prefix: str) -> dict:
    return {"1": {"class_type": "LoadImage", "inputs": {"image": name}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
            "3": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}


def in_bucket(seaweedfs, prefix: str) -> dict[str, bytes]:
    s3 = seaweedfs.client()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])]
    return {key: s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() for key in keys}


def has_jobs(client: ComfyClient) -> bool:
    return client.get("/api/jobs").status_code != 404  # ComfyUI 0.33 and later


@pytest.fixture(scope="module")
def victim(cluster, seaweedfs):
    """The victim's upload, its socket on instance 0 and a finished prompt (made on another instance) that loaded
    the upload and saved and previewed it."""
    workers, _, store = cluster
    own = clients(cluster, VICTIM)[0]
    data, pixels = image()
    answer = own.post("/upload/image", files={"image": ("portrait.png", data)})
    assert answer.status_code == 200, answer.text
    socket = own.websocket(TAB)
    sid = json.loads(socket.recv())["data"]["sid"]
    with drained(operator(cluster, 0)):
        pid = queued(own, loading("portrait.png", "victim/out"), client_id=sid)
        record = wait_until(lambda: ended(store, [pid]), what="the victim's prompt")[pid]
    assert record["state"] == "done" and owner_of(workers, record) is not workers[0]
    outputs = own.get(f"/history/{pid}").json()[pid]["outputs"]
    try:
        yield {"data": data, "pixels": pixels, "socket": socket, "sid": sid, "pid": pid,
               "saved": outputs["2"]["images"][0], "preview": outputs["3"]["images"][0]}
    finally:
        socket.close()


def view(client: ComfyClient, ref: dict):
    return client.get("/view", params={"filename": ref["filename"], "subfolder": ref["subfolder"],
                                       "type": ref["type"]}, allow_redirects=False)


def test_the_attacker_reads_nothing_of_the_victims_from_any_instance(cluster, victim):
    pid, saved, preview = victim["pid"], victim["saved"], victim["preview"]
    upload = {"filename": "portrait.png", "subfolder": "", "type": "input"}
    for attacker, own in zip(clients(cluster, ATTACKER), clients(cluster, VICTIM), strict=True):
        assert attacker.get(f"/history/{pid}").json() == {}
        assert pid not in attacker.get("/history").json()
        refused(attacker.get(f"/tenancy/outputs/{pid}"), 404, "not_found")
        if has_jobs(own):
            refused(attacker.get(f"/api/jobs/{pid}"), 404, "not_found")
            assert pid not in {j["id"] for j in attacker.get("/api/jobs").json()["jobs"]}
        for ref in (saved, preview, upload):  # by the victim's own names: the attacker's own folders, empty
            assert view(attacker, ref).status_code == 404
            shown = own.get("/view", params=ref)  # the victim's, from this disk or the bucket
            assert shown.status_code == 200 and pixels_of(shown.content) == victim["pixels"]
        for ref in ({**saved, "subfolder": f"tenants/tenant-light/{saved['subfolder']}"},  # the real folder
                    {**upload, "subfolder": "tenants/tenant-light"}, {**upload, "filename": "portrait.png [input]"}):
            assert view(attacker, ref).status_code == 404  # a folder of that name inside its own
        for ref in ({**upload, "subfolder": "../tenant-light"}, {**upload, "filename": "../tenant-light/portrait.png"},
                    {**upload, "subfolder": "/"}, {**upload, "filename": "..%2ftenant-light%2fportrait.png"}):
            refused(view(attacker, ref), 403, "path_outside_tenant")
        # nor run a prompt that loads the victim's upload, by any name
        for name in ("portrait.png", "tenants/tenant-light/portrait.png"):  # not among its own uploads
            refused(attacker.queue(loading(name, "stolen")), 400)
        refused(attacker.queue(loading("../tenant-light/portrait.png", "stolen")), 403, "path_outside_tenant")


def test_the_attackers_socket_with_the_victims_client_id_hears_nothing_and_says_nothing(cluster, victim):
    """On every instance the attacker connects with the victim's client id, bare and namespaced, and queues with
    the victim's sid as its client id; the victim's next prompt, accepted by instance 0 (drained) and run
    elsewhere, reports to the victim's socket only, and the attacker's prompt to nobody of the victim's."""
    workers, _, store = cluster
    attackers = clients(cluster, ATTACKER)
    spies = []
    try:
        for attacker in attackers:
            for client_id in (TAB, victim["sid"]):
                spy = attacker.websocket(client_id)
                spies.append(spy)
                assert json.loads(spy.recv())["data"]["sid"].startswith("tenant-heavy:")
        theirs = queued(attackers[1], sleep(0.2, "theirs"), client_id=victim["sid"])
        own = clients(cluster, VICTIM)[0]
        with drained(operator(cluster, 0)):
            pid = queued(own, sleep(0.5, "victim-next"), client_id=victim["sid"])
            socket, heard = victim["socket"], []
            socket.settimeout(60)
            while not any(m.get("type") == "execution_success" and m["data"].get("prompt_id") == pid for m in heard):
                message = socket.recv()
                if isinstance(message, str):
                    heard.append(json.loads(message))
        assert owner_of(workers, job(store, pid)) is not workers[0]
        wait_until(lambda: ended(store, [theirs]), what="the attacker's prompt")
        assert theirs not in json.dumps(heard)
        for spy in spies:  # relayed messages travel in order behind the execution_success read: 1 s covers them
            seen = text_messages(spy, 1.0)
            assert pid not in json.dumps(seen) and victim["pid"] not in json.dumps(seen)
            assert {m["type"] for m in seen} <= {"status"}
    finally:
        for spy in spies:
            spy.close()


def test_the_attacker_cannot_stop_delete_or_take_over_the_victims_queued_prompt_from_any_instance(cluster, victim):
    """Every instance drained: the victim's prompt stays queued while the attacker tries every instance; then it
    runs as queued, and the victim's history keeps its finished prompt."""
    _, _, store = cluster
    attackers, own = clients(cluster, ATTACKER), clients(cluster, VICTIM)[0]
    jobs = has_jobs(own)
    with ExitStack() as drains:
        for index in range(3):
            drains.enter_context(drained(operator(cluster, index)))
        pid = queued(own, sleep(0.2, "queued"))
        before = job(store, pid)
        assert before["state"] == "queued"
        for attacker in attackers:
            refused(attacker.post("/queue", json={"delete": [pid]}), 403, "not_owner")
            assert attacker.post("/queue", json={"clear": True}).status_code == 200  # its own: none
            refused(attacker.post("/interrupt", json={"prompt_id": pid}), 403, "not_owner")
            refused(attacker.post("/history", json={"delete": [pid, victim["pid"]]}), 403, "not_owner")
            assert attacker.post("/history", json={"clear": True}).status_code == 200  # its own
            refused(attacker.queue(sleep(0.1, "collision"), prompt_id=pid), 409, "prompt_id_taken")
            refused(attacker.queue(sleep(0.1, "collision"), prompt_id=victim["pid"]), 409, "prompt_id_taken")
            if jobs:
                refused(attacker.post(f"/api/jobs/{pid}/cancel"), 404, "not_found")
                refused(attacker.post("/api/jobs/cancel", json={"job_ids": [pid]}), 403, "not_owner")
        assert job(store, pid) == before
        assert pid in [item[1] for item in own.get("/queue").json()["queue_pending"]]
    record = wait_until(lambda: ended(store, [pid]), what="the victim's queued prompt")[pid]
    assert record["state"] == "done" and record["tenant"] == "tenant-light"
    history = own.get("/history").json()
    assert {pid, victim["pid"]} <= set(history)


def test_the_attacker_cannot_stop_the_victims_running_prompt_from_any_instance(cluster, victim):
    _, _, store = cluster
    attackers, own = clients(cluster, ATTACKER), clients(cluster, VICTIM)[0]
    jobs = has_jobs(own)
    pid = queued(own, sleep(4.0, "running"))
    wait_until(lambda: job(store, pid).get("started") == "1", what="the victim's prompt running")
    for attacker in attackers:
        refused(attacker.post("/interrupt", json={"prompt_id": pid}), 403, "not_owner")
        assert attacker.post("/interrupt").status_code == 200  # the attacker's own running prompt: none
        refused(attacker.queue(sleep(0.1, "collision"), prompt_id=pid), 409, "prompt_id_taken")
        if jobs:
            refused(attacker.post(f"/api/jobs/{pid}/cancel"), 404, "not_found")
            refused(attacker.post("/api/jobs/cancel", json={"job_ids": [pid]}), 403, "not_owner")
    assert job(store, pid)["state"] == "running"
    record = wait_until(lambda: ended(store, [pid]), what="the victim's running prompt")[pid]
    assert record["state"] == "done", record
    entry = own.get(f"/history/{pid}").json()[pid]
    assert entry["status"]["status_str"] == "success"


def test_the_attackers_uploads_of_the_same_name_never_replace_the_victims_in_the_bucket(cluster, victim, seaweedfs):
    """Uploads of `portrait.png` at every instance, over-writing and in folders named like the victim's: each is
    the attacker's own object; names that would leave its folder are refused. The victim's object, its copies on
    every disk, and the pixels its next prompt (run elsewhere) loads stay the victim's."""
    workers, _, store = cluster
    attackers, own = clients(cluster, ATTACKER), clients(cluster, VICTIM)
    mine, _ = image()
    for attacker in attackers:
        for subfolder in ("", "tenants/tenant-light", "tenant-light", "tenants/tenant-light/input"):
            answer = attacker.post("/upload/image", files={"image": ("portrait.png", mine)},
                                   data={"subfolder": subfolder, "overwrite": "true"})
            assert answer.status_code == 200, answer.text
            assert (answer.json()["name"], answer.json()["subfolder"]) == ("portrait.png", subfolder)
        for subfolder in ("../tenant-light", "/tenants/tenant-light", "..", "%2e%2e/tenant-light"):
            refused(attacker.post("/upload/image", files={"image": ("portrait.png", mine)},
                                  data={"subfolder": subfolder, "overwrite": "true"}), 403, "path_outside_tenant")
        refused(attacker.post("/upload/image", files={"image": ("../tenant-light/portrait.png", mine)},
                              data={"overwrite": "true"}), 403, "path_outside_tenant")
        refused(attacker.post("/upload/image", files={"image": ("input/portrait.png", mine)},
                              data={"overwrite": "true"}), 400, "invalid_filename")
    assert in_bucket(seaweedfs, VICTIM_INPUT) == {f"{VICTIM_INPUT}portrait.png": victim["data"]}
    theirs = in_bucket(seaweedfs, f"{PREFIX}tenants/tenant-heavy/input/")
    assert set(theirs.values()) == {mine} and len(theirs) == 4
    for worker in workers:
        copy = worker.base / "input" / "tenants" / "tenant-light" / "portrait.png"
        assert not copy.exists() or copy.read_bytes() == victim["data"]
    with drained(operator(cluster, 0)):
        pid = queued(own[0], loading("portrait.png", "victim/again"))
        record = wait_until(lambda: ended(store, [pid]), what="the victim's prompt loading its upload")[pid]
    assert record["state"] == "done" and owner_of(workers, record) is not workers[0]
    saved = own[0].get(f"/history/{pid}").json()[pid]["outputs"]["2"]["images"][0]
    shown = own[0].get("/view", params=saved)
    assert shown.status_code == 200 and pixels_of(shown.content) == victim["pixels"]
