"""A tenant's ComfyUI user data (saved workflows, settings, anything under its `comfy-user` folder) the same from
every instance: three real guarded ComfyUI processes with the cluster queue on (one redis-server) and a real S3
server (SeaweedFS), driven with the requests ComfyUI's editor sends (its frontend's `storeUserData`,
`listUserDataFullInfo`, `moveUserData`, `deleteUserData`, settings by id and whole).

A workflow saved through one instance is in the bucket when the save answers, and listed and read through the
others; a setting posted on one is read on another; a move and a delete on one take effect on the others (on one
restarted meanwhile too, which keeps a file that was never in the bucket); another tenant sees none of it from any
instance; a read on an instance that holds everything already fetches nothing (the
guard's count of bucket requests: one listing, no download); with the bucket down, reads answer from this disk and
writes are answered and put in the bucket from the upload outbox once it is back."""

from __future__ import annotations

import json
import re
from urllib.parse import quote

import pytest

from tests.harness.client import ComfyClient
from tests.harness.cluster import running_cluster
from tests.harness.seaweedfs import BUCKET
from tests.harness.waiting import wait_until

pytestmark = pytest.mark.comfy
PREFIX = "shared/"
FULL_LISTING = "/api/userdata?dir=workflows&recurse=true&split=false&full_info=true"  # the editor's workflow list


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, seaweedfs):
    with running_cluster(tmp_path_factory, "userdata", 3, {"outputs": seaweedfs.outputs(prefix=PREFIX)}) as cluster:
        yield cluster


def clients(workers, seeded, who: str = "light") -> list[ComfyClient]:
    return [ComfyClient(w.url, seeded.keys[who]) for w in workers]


def file_url(name: str) -> str:
    return f"/api/userdata/{quote(name, safe='')}"


def save(client: ComfyClient, name: str, body: bytes, **query: str) -> dict | str:
    answer = client.post(file_url(name), data=body, params={"overwrite": "true", "full_info": "true", **query})
    assert answer.status_code == 200, answer.text
    return answer.json()


def listed(client: ComfyClient) -> dict[str, int]:
    """The editor's list of saved workflows: user-data path -> size (ComfyUI lists them relative to `workflows/`;
    none when the folder is missing, as the editor reads a 404)."""
    answer = client.get(FULL_LISTING)
    if answer.status_code == 404:
        return {}
    assert answer.status_code == 200, answer.text
    return {f"workflows/{entry['path']}": entry["size"] for entry in answer.json()}


def read(client: ComfyClient, name: str) -> bytes | None:
    answer = client.get(file_url(name))
    if answer.status_code == 404:
        return None
    assert answer.status_code == 200, answer.text
    return answer.content


def in_bucket(seaweedfs, key: str) -> bytes | None:
    try:
        return seaweedfs.client().get_object(Bucket=BUCKET, Key=key)["Body"].read()
    except Exception:  # 404 (not there) or the server is down
        return None


def user_file(worker, tenant: str, name: str):
    return worker.base / "user" / f"tenant-tenant-{tenant}" / name  # ComfyUI's user `tenant-<tenant id>`


def bucket_requests(worker, seeded) -> dict[str, float]:
    """The guard's count of its bucket requests for tenants' user data on this instance, by request."""
    text = ComfyClient(worker.url, seeded.keys["admin"]).get("/tenancy/metrics").text
    return {request: float(value) for request, value in
            re.findall(r'^tenancy_user_data_bucket_requests_total\{request="(\w+)"\} (\S+)$', text, re.M)}


def workflow(tag: str) -> bytes:
    return json.dumps({"nodes": [], "links": [], "extra": {"tag": tag}}).encode()


def test_a_workflow_saved_through_one_instance_is_listed_and_read_through_the_others(cluster, seaweedfs):
    workers, seeded, _ = cluster
    light = clients(workers, seeded)
    body = workflow("portrait")
    answer = save(light[0], "workflows/portrait.json", body)
    assert answer["path"] == "workflows/portrait.json" and answer["size"] == len(body)
    # in the bucket when the save answers: the editor's next request may reach any instance
    assert in_bucket(seaweedfs, f"{PREFIX}tenants/tenant-light/user/workflows/portrait.json") == body
    assert not user_file(workers[1], "light", "workflows/portrait.json").exists()
    # overwrite=false answers as one ComfyUI would: the file exists, wherever it was saved
    refused = light[2].post(file_url("workflows/portrait.json"), data=b"{}", params={"overwrite": "false"})
    assert refused.status_code == 409, refused.text
    for client in light[1:]:
        assert listed(client) == {"workflows/portrait.json": len(body)}
        assert read(client, "workflows/portrait.json") == body
        tree = client.get("/api/v2/userdata", params={"path": "workflows"})
        assert tree.status_code == 200, tree.text
        assert [(e["path"], e["type"]) for e in tree.json()] == [("workflows/portrait.json", "file")]
    # each instance reports the same time for it (the object's), so the editor's list is the same wherever it asks
    times = {client.get(FULL_LISTING).json()[0]["modified"] for client in light}
    assert len(times) == 1

    changed = workflow("portrait, edited")
    save(light[2], "workflows/portrait.json", changed)
    assert [read(client, "workflows/portrait.json") for client in light] == [changed] * 3


def test_a_setting_posted_on_one_instance_is_read_on_another(cluster):
    workers, seeded, _ = cluster
    light = clients(workers, seeded)
    posted = light[1].post("/api/settings/Comfy.ColorPalette", json="light")
    assert posted.status_code == 200, posted.text
    assert light[2].get("/api/settings/Comfy.ColorPalette").json() == "light"
    # the whole settings, merged with what another instance wrote before
    posted = light[2].post("/api/settings", json={"Comfy.Locale": "fr"})
    assert posted.status_code == 200, posted.text
    for client in light:
        settings = client.get("/api/settings").json()
        assert (settings.get("Comfy.ColorPalette"), settings.get("Comfy.Locale")) == ("light", "fr")
    assert read(light[0], "comfy.settings.json") is not None


def test_a_move_and_a_delete_on_one_instance_take_effect_on_the_others(cluster, seaweedfs):
    workers, seeded, _ = cluster
    light = clients(workers, seeded)
    kept, gone = workflow("to move"), workflow("to delete")
    save(light[0], "workflows/draft.json", kept)
    save(light[1], "workflows/old.json", gone)
    for client in light:  # every instance holds both now
        assert {"workflows/draft.json", "workflows/old.json"} <= set(listed(client))
    for worker in workers:
        assert user_file(worker, "light", "workflows/draft.json").read_bytes() == kept

    moved = light[2].post(f"{file_url('workflows/draft.json')}/move/{quote('workflows/final.json', safe='')}",
                          params={"overwrite": "false", "full_info": "true"})
    assert moved.status_code == 200, moved.text
    deleted = light[2].delete(file_url("workflows/old.json"))
    assert deleted.status_code == 204, deleted.text
    assert in_bucket(seaweedfs, f"{PREFIX}tenants/tenant-light/user/workflows/final.json") == kept
    assert in_bucket(seaweedfs, f"{PREFIX}tenants/tenant-light/user/workflows/draft.json") is None
    assert in_bucket(seaweedfs, f"{PREFIX}tenants/tenant-light/user/workflows/old.json") is None

    for worker, client in zip(workers[:2], light[:2], strict=True):
        names = listed(client)
        assert "workflows/final.json" in names
        assert "workflows/draft.json" not in names and "workflows/old.json" not in names
        assert read(client, "workflows/final.json") == kept
        assert read(client, "workflows/draft.json") is None and read(client, "workflows/old.json") is None
        assert client.delete(file_url("workflows/old.json")).status_code == 404  # as on one ComfyUI
        assert not user_file(worker, "light", "workflows/old.json").exists()  # gone from its disk too


def test_another_tenant_sees_none_of_it_from_any_instance(cluster, seaweedfs):
    workers, seeded, _ = cluster
    heavy = clients(workers, seeded, "heavy")
    for client in heavy:
        assert listed(client) == {}
        assert read(client, "workflows/final.json") is None
        assert client.get("/api/settings/Comfy.ColorPalette").json() is None
    own = workflow("heavy's own")
    save(heavy[1], "workflows/final.json", own)  # the same name, its own file
    assert [read(client, "workflows/final.json") for client in heavy] == [own] * 3
    assert [read(client, "workflows/final.json") for client in clients(workers, seeded)] == [workflow("to move")] * 3
    keys = seaweedfs.client().list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}tenants/tenant-heavy/user/")
    assert [o["Key"] for o in keys["Contents"]] == [f"{PREFIX}tenants/tenant-heavy/user/workflows/final.json"]


def test_a_read_on_an_instance_that_holds_everything_fetches_nothing(cluster):
    workers, seeded, _ = cluster
    light = clients(workers, seeded)
    save(light[0], "workflows/counted.json", workflow("counted"))
    listed(light[1])  # instance 1 fetches it (and anything else it lacks)
    copy = user_file(workers[1], "light", "workflows/counted.json")
    before, held = bucket_requests(workers[1], seeded), (copy.stat().st_ino, copy.stat().st_mtime_ns)
    # what the editor reads on a page load, one request at a time
    assert light[1].get("/api/settings").status_code == 200
    assert "workflows/counted.json" in listed(light[1])
    assert read(light[1], "workflows/counted.json") == workflow("counted")
    after = bucket_requests(workers[1], seeded)
    assert after.get("get", 0) == before.get("get", 0)  # nothing downloaded
    assert after["list"] - before.get("list", 0) == 3  # one listing of the tenant's prefix per read
    assert (copy.stat().st_ino, copy.stat().st_mtime_ns) == held  # the very file it was


def test_a_restarted_instance_removes_what_was_deleted_elsewhere_meanwhile_and_keeps_what_was_never_shared(cluster):
    workers, seeded, _ = cluster
    light = clients(workers, seeded)
    save(light[0], "workflows/restart.json", workflow("restart"))
    assert "workflows/restart.json" in listed(light[1])  # on instance 1's disk, in sync with the bucket
    # a file from before the cluster: on instance 1's disk only, never in the bucket
    local_only = user_file(workers[1], "light", "workflows/local-only.json")
    local_only.write_bytes(workflow("local only"))
    workers[1].stop()
    try:
        assert light[0].delete(file_url("workflows/restart.json")).status_code == 204
    finally:
        workers[1].start()
    assert user_file(workers[1], "light", "workflows/restart.json").is_file()  # as it was left
    names = listed(light[1])  # the first read after the restart: what it had in sync was kept on its disk
    assert "workflows/restart.json" not in names
    assert not user_file(workers[1], "light", "workflows/restart.json").exists()
    assert "workflows/local-only.json" in names and local_only.read_bytes() == workflow("local only")


def test_with_the_bucket_down_reads_answer_from_disk_and_writes_wait_in_the_outbox(cluster, seaweedfs):
    workers, seeded, _ = cluster
    light = clients(workers, seeded)
    save(light[0], "workflows/before.json", workflow("before"))
    assert "workflows/before.json" in listed(light[1])
    seaweedfs.stop()
    try:
        assert read(light[1], "workflows/before.json") == workflow("before")  # what lies on its disk
        save(light[0], "workflows/offline.json", workflow("offline"))  # answered, waits in the outbox
        assert light[0].delete(file_url("workflows/before.json")).status_code == 204
        names = listed(light[0])
        assert "workflows/offline.json" in names and "workflows/before.json" not in names
        assert "workflows/before.json" in listed(light[1])  # not deleted there while the bucket does not answer
    finally:
        seaweedfs.start()
    key = f"{PREFIX}tenants/tenant-light/user/workflows/"
    assert wait_until(lambda: in_bucket(seaweedfs, key + "offline.json"), 30, "the save from the outbox") \
        == workflow("offline")
    wait_until(lambda: in_bucket(seaweedfs, key + "before.json") is None, 30, "the delete from the outbox")
    # each instance sees the bucket again once its own probe does (every 5 s; until then it answers from its
    # disk): its reads sync again from then on
    wait_until(lambda: "workflows/offline.json" in listed(light[1]), 30, "instance 1 syncing again")
    assert "workflows/before.json" not in listed(light[1])
    assert not user_file(workers[1], "light", "workflows/before.json").exists()
    assert wait_until(lambda: read(light[2], "workflows/offline.json"), 30, "instance 2 syncing again") \
        == workflow("offline")
