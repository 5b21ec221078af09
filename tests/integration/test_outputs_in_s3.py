"""Outputs in S3-compatible storage, with a real guarded ComfyUI (`outputs.store: s3`) and a real S3 server
(SeaweedFS, which checks SigV4 signatures and expiry itself): a tenant's saved image lands in the bucket under its
own prefix; /view and signed downloads redirect to presigned URLs the bucket serves (Range too); another tenant's
key, a tampered URL and an expired one are refused by the bucket; with the bucket down outputs come from disk and
their uploads wait, then go through once it is back; a file only the bucket has (another instance made it) is
found there."""

from __future__ import annotations

import random
import re
import time
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

from tenancy.cli.doctor import outputs_bucket
from tenancy.config import from_mapping
from tenancy.store.object_store import ObjectStore
from tests.harness.client import ComfyClient
from tests.harness.comfyui import ComfyUI
from tests.harness.images import saved_image
from tests.harness.seaweedfs import ACCESS_KEY, BUCKET, SECRET_KEY
from tests.harness.tenants import seed
from tests.harness.waiting import wait_until

pytestmark = pytest.mark.comfy
URL_TTL_S = 5


@pytest.fixture(scope="module")
def s3_comfy(tmp_path_factory, seaweedfs):
    base = tmp_path_factory.mktemp("s3-comfy")
    seeded = seed(base, {"outputs": seaweedfs.outputs(url_ttl_s=URL_TTL_S)})
    server = ComfyUI(base, env={"TENANCY_REQUIRE_GUARD": "1"}).start()
    server.seeded = seeded
    yield server
    server.stop()


def client(server: ComfyUI, who: str) -> ComfyClient:
    return ComfyClient(server.url, server.seeded.keys[who])



def view(tenant: ComfyClient, image: dict) -> requests.Response:
    return tenant.get("/view", params={"filename": image["filename"], "subfolder": image["subfolder"],
                                       "type": "output"}, allow_redirects=False)


def on_disk(server: ComfyUI, tenant: str, image: dict) -> bytes:
    return (server.base / "output" / "tenants" / tenant / image["subfolder"] / image["filename"]).read_bytes()


def key_of(tenant: str, image: dict) -> str:
    return f"tenants/{tenant}/output/{image['subfolder']}/{image['filename']}"


def in_bucket(seaweedfs, key: str) -> bool:
    try:
        seaweedfs.client().head_object(Bucket=BUCKET, Key=key)
        return True
    except Exception:  # 404 (not yet) or the server is down
        return False


def redirected(tenant: ComfyClient, image: dict) -> str | None:
    answer = view(tenant, image)
    return answer.headers["Location"] if answer.status_code == 302 else None


def with_path(url: str, key: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{BUCKET}/{key}", parts.query, ""))


def metric(server: ComfyUI, name: str) -> float:
    text = client(server, "admin").get("/tenancy/metrics").text
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else float("nan")


def test_an_output_lands_under_its_tenants_prefix_and_the_bucket_serves_it_by_presigned_url(s3_comfy, seaweedfs):
    a, b = client(s3_comfy, "a"), client(s3_comfy, "b")
    image = saved_image(a, "s3/me")
    theirs = saved_image(b, "s3/me")
    assert (image["subfolder"], theirs["subfolder"]) == ("s3", "s3")
    wait_until(lambda: in_bucket(seaweedfs, key_of("tenant-a", image)) and in_bucket(seaweedfs, key_of("tenant-b",
               theirs)), 30, "both outputs uploaded")
    keys = [o["Key"] for o in seaweedfs.client().list_objects_v2(Bucket=BUCKET, Prefix="tenants/")["Contents"]]
    assert sorted(keys) == sorted([key_of("tenant-a", image), key_of("tenant-b", theirs)])

    url = wait_until(lambda: redirected(a, image), 10, "/view redirects once the upload is known")
    expected = on_disk(s3_comfy, "tenant-a", image)
    served = requests.get(url, timeout=10)
    assert served.status_code == 200 and served.content == expected
    assert served.headers["Content-Type"] == "image/png"
    assert served.headers["Content-Disposition"] == f'inline; filename="{image["filename"]}"'
    part = requests.get(url, headers={"Range": "bytes=0-9"}, timeout=10)
    assert (part.status_code, part.content) == (206, expected[:10])

    # the bucket itself refuses: a's signature on b's object, a tampered signature
    assert requests.get(with_path(url, key_of("tenant-b", theirs)), timeout=10).status_code == 403
    tampered = re.sub(r"(X-Amz-Signature=)([0-9a-f])", lambda m: m[1] + ("0" if m[2] != "0" else "1"), url)
    assert tampered != url and requests.get(tampered, timeout=10).status_code == 403
    # and the same name from b is b's own file: names are per tenant, so are keys
    assert urlsplit(redirected(b, image)).path == f"/{BUCKET}/{key_of('tenant-b', theirs)}"

    # a signed download (what /tenancy/outputs lists) redirects too, as an attachment
    listed = a.get(f"/tenancy/outputs/{image['prompt_id']}").json()["files"]
    download = a.get(listed[0]["url"], allow_redirects=False)
    assert download.status_code == 302
    fetched = requests.get(download.headers["Location"], timeout=10)
    assert fetched.content == expected
    assert fetched.headers["Content-Disposition"] == f'attachment; filename="{image["filename"]}"'

    time.sleep(URL_TTL_S + 1.5)
    expired = requests.get(url, timeout=10)
    assert expired.status_code == 403 and "expired" in expired.text.lower()
    assert metric(s3_comfy, 'tenancy_output_uploads_total{result="ok"}') >= 2


def test_an_output_only_the_bucket_has_is_redirected_to_for_its_owner_only(s3_comfy, seaweedfs):
    """What another instance made (not on this disk, not uploaded from here) is looked up in the bucket under the
    caller's own prefix."""
    a, b = client(s3_comfy, "a"), client(s3_comfy, "b")
    image = {"filename": "from_elsewhere_00001_.png", "subfolder": "elsewhere"}
    body = random.randbytes(256)
    seaweedfs.client().put_object(Bucket=BUCKET, Key=key_of("tenant-a", image), Body=body, ContentType="image/png")
    url = redirected(a, image)
    assert url is not None and requests.get(url, timeout=10).content == body
    assert view(b, image).status_code == 404  # b's prefix has no such object, and b's disk no such file


def test_with_the_bucket_down_outputs_come_from_disk_and_their_uploads_wait_until_it_is_back(s3_comfy, seaweedfs):
    a = client(s3_comfy, "a")
    uploaded = saved_image(a, "down/before")
    wait_until(lambda: redirected(a, uploaded), 30, "the first output is served from the bucket")
    seaweedfs.stop()
    try:
        wait_until(lambda: metric(s3_comfy, "tenancy_output_store_up") == 0, 30, "the guard sees the bucket down")
        answer = view(a, uploaded)
        assert answer.status_code == 200 and answer.content == on_disk(s3_comfy, "tenant-a", uploaded)

        waiting = saved_image(a, "down/during")  # the prompt and its settlement do not wait for the bucket
        answer = view(a, waiting)
        assert answer.status_code == 200 and answer.content == on_disk(s3_comfy, "tenant-a", waiting)
        health = requests.get(s3_comfy.url + "/tenancy/health", timeout=10)
        assert health.status_code == 503 and health.json()["upload_backlog"] >= 1
        wait_until(lambda: metric(s3_comfy, 'tenancy_output_uploads_total{result="error"}') >= 1, 15,
                   "the failed upload is counted")
    finally:
        seaweedfs.start()
    wait_until(lambda: in_bucket(seaweedfs, key_of("tenant-a", waiting)), 30, "the waiting upload went through")
    url = wait_until(lambda: redirected(a, waiting), 15, "/view redirects again")
    assert requests.get(url, timeout=10).content == on_disk(s3_comfy, "tenant-a", waiting)
    wait_until(lambda: requests.get(s3_comfy.url + "/tenancy/health", timeout=10).status_code == 200, 15,
               "healthy again")


def test_a_large_file_is_uploaded_in_parts(seaweedfs, tmp_path):
    """Managed transfer: from `multipart_mb` up the file goes in parts (SeaweedFS, like S3, refuses parts under
    5 MiB that are not the last), and the object reads back whole."""
    big = tmp_path / "long.mp4"
    big.write_bytes(random.randbytes(11 * 1024 * 1024))
    bucket = ObjectStore(bucket=BUCKET, endpoint=seaweedfs.endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY,
                         multipart_mb=5)
    bucket.upload(big, "tenants/t/output/long.mp4", "video/mp4")
    head = seaweedfs.client().head_object(Bucket=BUCKET, Key="tenants/t/output/long.mp4")
    assert head["ETag"].strip('"').endswith("-3") and head["ContentLength"] == big.stat().st_size
    assert head["ContentType"] == "video/mp4"
    url = bucket.presign("tenants/t/output/long.mp4", 60, "video/mp4", 'inline; filename="long.mp4"')
    assert requests.get(url, timeout=30).content == big.read_bytes()


def test_doctor_checks_the_outputs_bucket(seaweedfs, tmp_path):
    def finding(**outputs):
        settings = from_mapping({"outputs": seaweedfs.outputs(**outputs)}, tmp_path)
        return outputs_bucket(settings.outputs)

    assert finding().status == "ok"
    assert finding(bucket="no-such-bucket").status == "fail"
    assert finding(secret_key="not-the-secret").status == "fail"
