"""A tenant's files from any instance: three real guarded ComfyUI processes with the cluster queue on (one
redis-server) and a real S3 server (SeaweedFS). An image uploaded to one instance is in the bucket when the upload
answers; prompts loading it run on the other instances (which fetch it before they run it, once) and load its
pixels; another tenant cannot load it or view it from any instance, and its own file of the same name is its own;
any instance validates a prompt naming it and serves it at /view?type=input; an output is viewed and downloaded
(signed link) the same from every instance, by its owner only; the previews and outputs of a prompt that ran on
another instance are served by the instance asked as soon as a /history entry or an `executed` message names them
(for a client without a socket too); with the bucket down, prompts run with what lies on disk and an upload waits
in the outbox until the bucket is back."""

from __future__ import annotations

import io
import json
import random

import pytest
import requests
from PIL import Image

from tests.harness.client import ComfyClient
from tests.harness.cluster import drained, ended, owner_of, running_cluster
from tests.harness.seaweedfs import BUCKET
from tests.harness.waiting import wait_until

pytestmark = pytest.mark.comfy
PREFIX = "shared/"  # a prefix of its own: keys carry it
# long enough that three prompts queued at once are taken by three workers (none asks while it runs one)
SPREAD_S = 1.5


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, seaweedfs):
    with running_cluster(tmp_path_factory, "inputs", 3, {"outputs": seaweedfs.outputs(prefix=PREFIX)}) as cluster:
        yield cluster


def image(width: int = 5, height: int = 3) -> tuple[bytes, bytes]:
    """A tiny PNG of random pixels (a file of its own each time) and its pixels."""
    picture = Image.new("RGB", (width, height))
    picture.putdata([tuple(random.randrange(256) for _ in range(3)) for _ in range(width * height)])
    data = io.BytesIO()
    picture.save(data, format="PNG")
    return data.getvalue(), picture.tobytes()


def upload(client: ComfyClient, name: str, data: bytes) -> dict:
    answer = client.post("/upload/image", files={"image": (name, data)})
    assert answer.status_code == 200, answer.text
    return answer.json()


def loading(name: str, tag: str, sleep_s: float = 0.0) -> dict:
    workflow = {"1": {"class_type": "LoadImage", "inputs": {"image": name}},
                "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": f"loaded/{tag}"}}}
    if sleep_s:
        workflow["3"] = {"class_type": "TenancyTestSleep", "inputs": {"seconds": sleep_s, "tag": tag}}
    return workflow


def queue_all(client: ComfyClient, workflows: list[dict]) -> list[str]:
    ids = []
    for workflow in workflows:
        answer = client.queue(workflow)
        assert answer.status_code == 200, answer.text
        ids.append(answer.json()["prompt_id"])
    return ids


def loaded_pixels(worker, key: str, tenant: str, prompt_id: str) -> bytes:
    """The pixels SaveImage wrote on the instance that ran the prompt: what LoadImage read there."""
    entry = ComfyClient(worker.url, key).get(f"/history/{prompt_id}").json()[prompt_id]
    saved = entry["outputs"]["2"]["images"][0]
    path = worker.base / "output" / "tenants" / tenant / saved["subfolder"] / saved["filename"]
    with Image.open(path) as picture:
        return picture.convert("RGB").tobytes()


def on_disk(worker, tenant: str, name: str):
    return worker.base / "input" / "tenants" / tenant / name


def in_bucket(seaweedfs, key: str) -> bytes | None:
    try:
        return seaweedfs.client().get_object(Bucket=BUCKET, Key=key)["Body"].read()
    except Exception:  # 404 (not there) or the server is down
        return None


def run_spread(workers, seeded, store, name: str, tag: str) -> dict:
    """Three prompts loading `name`, queued at instance 0, run by the three workers; their jobs."""
    ids = queue_all(ComfyClient(workers[0].url, seeded.keys["light"]),
                    [loading(name, f"{tag}{i}", SPREAD_S) for i in range(3)])
    jobs = wait_until(lambda: ended(store, ids), what=f"the prompts of {tag}")
    assert {j["state"] for j in jobs.values()} == {"done"}, jobs
    assert {owner_of(workers, j).port for j in jobs.values()} == {w.port for w in workers}
    return jobs


def test_an_upload_to_one_instance_is_loaded_by_prompts_running_on_the_others_fetched_once(cluster, seaweedfs):
    workers, seeded, store = cluster
    data, pixels = image()
    answer = upload(ComfyClient(workers[0].url, seeded.keys["light"]), "portrait.png", data)
    assert (answer["name"], answer["subfolder"]) == ("portrait.png", "")
    # in the bucket when the upload answers (no waiting): the next prompt may run anywhere at once
    assert in_bucket(seaweedfs, f"{PREFIX}tenants/tenant-light/input/portrait.png") == data
    assert not on_disk(workers[1], "tenant-light", "portrait.png").exists()
    assert not on_disk(workers[2], "tenant-light", "portrait.png").exists()

    jobs = run_spread(workers, seeded, store, "portrait.png", "first")
    for pid, job in jobs.items():
        assert loaded_pixels(owner_of(workers, job), seeded.keys["light"], "tenant-light", pid) == pixels
    copies = [on_disk(w, "tenant-light", "portrait.png") for w in workers]
    assert [c.read_bytes() for c in copies] == [data] * 3
    before = [(c.stat().st_ino, c.stat().st_mtime_ns) for c in copies]

    run_spread(workers, seeded, store, "portrait.png", "second")
    # nothing fetched anew: every instance's copy is the very file it was (a fetch renames a new one over it)
    assert [(c.stat().st_ino, c.stat().st_mtime_ns) for c in copies] == before


def test_another_tenant_cannot_load_or_view_it_from_any_instance_and_its_own_same_name_is_its_own(cluster,
                                                                                                    seaweedfs):
    workers, seeded, store = cluster
    for worker in workers:  # the file lies on every disk now, in the first tenant's folder
        assert on_disk(worker, "tenant-light", "portrait.png").is_file()
        other = ComfyClient(worker.url, seeded.keys["heavy"])
        refused = other.queue(loading("portrait.png", "theirs"))
        assert refused.status_code == 400, refused.text
        assert other.get("/view", params={"filename": "portrait.png", "type": "input"},
                         allow_redirects=False).status_code == 404
    listed = seaweedfs.client().list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}tenants/tenant-heavy/input/")
    assert listed.get("KeyCount") == 0

    data, pixels = image()
    upload(ComfyClient(workers[1].url, seeded.keys["heavy"]), "portrait.png", data)
    pid = queue_all(ComfyClient(workers[2].url, seeded.keys["heavy"]), [loading("portrait.png", "own")])[0]
    job = wait_until(lambda: ended(store, [pid]), what="the other tenant's prompt")[pid]
    assert job["state"] == "done"
    assert loaded_pixels(owner_of(workers, job), seeded.keys["heavy"], "tenant-heavy", pid) == pixels
    # each tenant's object under its own prefix, and the first tenant's copies untouched wherever it ran
    assert in_bucket(seaweedfs, f"{PREFIX}tenants/tenant-heavy/input/portrait.png") == data
    first = in_bucket(seaweedfs, f"{PREFIX}tenants/tenant-light/input/portrait.png")
    assert first != data and [on_disk(w, "tenant-light", "portrait.png").read_bytes() for w in workers] == [first] * 3


def test_any_instance_validates_a_prompt_naming_an_upload_taken_elsewhere_and_serves_it(cluster, seaweedfs):
    workers, seeded, store = cluster
    data, pixels = image()
    upload(ComfyClient(workers[0].url, seeded.keys["light"]), "elsewhere.png", data)
    viewer = ComfyClient(workers[2].url, seeded.keys["light"])
    assert not on_disk(workers[2], "tenant-light", "elsewhere.png").exists()
    shown = viewer.get("/view", params={"filename": "elsewhere.png", "type": "input"}, allow_redirects=False)
    assert shown.status_code == 302, shown.text
    assert viewer.session.get(shown.headers["Location"], timeout=10).content == data

    pid = queue_all(viewer, [loading("elsewhere.png", "validated")])[0]  # ComfyUI validates it on instance 2
    job = wait_until(lambda: ended(store, [pid]), what="the prompt accepted by instance 2")[pid]
    assert job["state"] == "done"
    assert loaded_pixels(owner_of(workers, job), seeded.keys["light"], "tenant-light", pid) == pixels


def test_an_output_is_viewed_and_downloaded_the_same_from_every_instance_by_its_owner_only(cluster, seaweedfs):
    workers, seeded, store = cluster
    data, _ = image()
    sender = ComfyClient(workers[0].url, seeded.keys["light"])
    upload(sender, "shown.png", data)
    pid = queue_all(sender, [loading("shown.png", "shown")])[0]
    job = wait_until(lambda: ended(store, [pid]), what="the prompt")[pid]
    assert job["state"] == "done"
    readers = [ComfyClient(w.url, seeded.keys["light"]) for w in workers]
    refs = [reader.get(f"/history/{pid}").json()[pid]["outputs"]["2"]["images"][0] for reader in readers]
    assert all(ref == refs[0] for ref in refs) and refs[0]["subfolder"] == "loaded"
    ref = refs[0]
    made = (owner_of(workers, job).base / "output" / "tenants" / "tenant-light" / "loaded"
            / ref["filename"]).read_bytes()
    key = f"{PREFIX}tenants/tenant-light/output/loaded/{ref['filename']}"
    assert wait_until(lambda: in_bucket(seaweedfs, key), 30, "the output's upload") == made
    params = {"filename": ref["filename"], "subfolder": "loaded", "type": "output"}
    for i, reader in enumerate(readers):
        shown = reader.get("/view", params=params, allow_redirects=False)
        assert shown.status_code == 302, shown.text  # to the bucket, from the instance that made it or not
        assert reader.session.get(shown.headers["Location"], timeout=10).content == made
        links = reader.get(f"/tenancy/outputs/{pid}").json()["files"]
        assert [link["filename"] for link in links] == [ref["filename"]]
        elsewhere = workers[(i + 1) % len(workers)]  # a signed link works at any instance, without a key
        assert requests.get(elsewhere.url + links[0]["url"], timeout=10).content == made
    for worker in workers:
        other = ComfyClient(worker.url, seeded.keys["heavy"])
        assert other.get("/view", params=params, allow_redirects=False).status_code == 404
        assert other.get(f"/tenancy/outputs/{pid}").status_code == 404


def viewed_at_once(tenant: ComfyClient, other: ComfyClient, ref: dict) -> bytes:
    """What /view of a history or `executed` ref redirects to, asked without waiting; another tenant gets 404."""
    params = {"filename": ref["filename"], "subfolder": ref["subfolder"], "type": ref["type"]}
    shown = tenant.get("/view", params=params, allow_redirects=False)
    assert shown.status_code == 302, (ref, shown.text)
    assert other.get("/view", params=params, allow_redirects=False).status_code == 404
    return tenant.session.get(shown.headers["Location"], timeout=10).content


def pixels_of(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as picture:
        return picture.convert("RGB").tobytes()


def test_a_socketless_client_sees_previews_and_outputs_from_any_instance_as_soon_as_the_history_names_them(
        cluster, seaweedfs):
    """Instance 0 drained: the prompt it accepts runs elsewhere. An API client without a socket (ComfyUI then sends
    no `executed`) polls instance 0's /history; the moment the entry shows, the PreviewImage picture and the saved
    output it names are served through instance 0 from the bucket, where the running instance put them before it
    recorded the result."""
    workers, seeded, store = cluster
    tenant = ComfyClient(workers[0].url, seeded.keys["light"])
    other = ComfyClient(workers[0].url, seeded.keys["heavy"])
    data, pixels = image()
    upload(tenant, "previewed.png", data)
    with drained(ComfyClient(workers[0].url, seeded.keys["admin"])):
        workflow = {**loading("previewed.png", "polled"),
                    "3": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
        answer = tenant.queue(workflow)
        assert answer.status_code == 200, answer.text
        pid = answer.json()["prompt_id"]
        outputs = wait_until(lambda: tenant.get(f"/history/{pid}").json().get(pid, {}).get("outputs"),
                             what="the entry")
        preview, saved = outputs["3"]["images"][0], outputs["2"]["images"][0]
        assert (preview["type"], saved["type"]) == ("temp", "output") and "tenants/" not in preview["subfolder"]
        assert pixels_of(viewed_at_once(tenant, other, preview)) == pixels
        assert pixels_of(viewed_at_once(tenant, other, saved)) == pixels
    assert owner_of(workers, ended(store, [pid])[pid]) is not workers[0]
    assert not (workers[0].base / "temp" / "tenants" / "tenant-light" / preview["filename"]).exists()


def test_an_editor_on_one_instance_is_shown_a_preview_made_elsewhere_as_its_executed_message_arrives(
        cluster, seaweedfs):
    """Instance 0 drained, the editor's socket on it: the prompt runs elsewhere; when the relayed `executed` message
    names the picture, instance 0 serves it at once (the prompt goes on for 2 s after its PreviewImage, so this is
    not the put before its result is recorded)."""
    workers, seeded, store = cluster
    tenant = ComfyClient(workers[0].url, seeded.keys["light"])
    data, pixels = image()
    upload(tenant, "edited.png", data)
    socket = tenant.websocket("editor-tab")
    try:
        with drained(ComfyClient(workers[0].url, seeded.keys["admin"])):
            answer = tenant.queue({
                "1": {"class_type": "LoadImage", "inputs": {"image": "edited.png"}},
                "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
                "3": {"class_type": "TenancyTestDelay", "inputs": {"images": ["1", 0], "seconds": 2.0}},
                "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}}}, client_id="editor-tab")
            assert answer.status_code == 200, answer.text
            pid = answer.json()["prompt_id"]
            socket.settimeout(60)
            while True:
                message = socket.recv()
                if isinstance(message, str) and json.loads(message)["type"] == "executed":
                    executed = json.loads(message)["data"]
                    if executed["prompt_id"] == pid:
                        break
            assert executed["node"] == "2"
            ref = executed["output"]["images"][0]
            assert pixels_of(viewed_at_once(tenant, ComfyClient(workers[0].url, seeded.keys["heavy"]), ref)) == pixels
            wait_until(lambda: ended(store, [pid]), what="the edited prompt")
    finally:
        socket.close()


def test_with_the_bucket_down_prompts_run_with_what_is_on_disk_and_an_upload_waits_for_it(cluster, seaweedfs):
    workers, seeded, store = cluster
    seaweedfs.stop()
    try:
        run_spread(workers, seeded, store, "portrait.png", "down")  # on every disk since the first test
        data, _ = image()
        upload(ComfyClient(workers[0].url, seeded.keys["light"]), "while-down.png", data)
        assert on_disk(workers[0], "tenant-light", "while-down.png").read_bytes() == data
    finally:
        seaweedfs.start()
    key = f"{PREFIX}tenants/tenant-light/input/while-down.png"
    assert wait_until(lambda: in_bucket(seaweedfs, key), 30, "the upload from the outbox") == data
