"""Outputs in a bucket, the pure parts: object keys, what is uploaded, where a download is served from, the
headers a presigned URL asks for, and the `outputs` settings."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tenancy.config import ConfigError, from_mapping
from tenancy.outputs import (
    DISK,
    LOOK,
    REDIRECT,
    bucket_folders,
    content_disposition,
    content_type,
    object_key,
    owner_of,
    put_when_shown,
    shown_files,
    uploaded_files,
    view_redirectable,
    where_to_serve,
)
from tenancy.store.object_store import CdnSigner
from tenancy.store.outbox import Outbox

S3 = {"store": "s3", "bucket": "outs", "endpoint": "http://127.0.0.1:8333"}


def test_object_keys_are_under_the_tenants_prefix_with_the_subfolder_it_names():
    assert object_key("", "acme", "output", "tenants/acme/clips", "a.mp4") == "tenants/acme/output/clips/a.mp4"
    assert object_key("", "acme", "output", "tenants/acme", "a.png") == "tenants/acme/output/a.png"
    assert object_key("/prod/", "acme", "output", "tenants/acme", "a.png") == "prod/tenants/acme/output/a.png"
    # a file the output index attributes to the tenant outside its folder keeps its real subfolder, still inside
    # the tenant's prefix
    assert object_key("", "acme", "output", "legacy", "a.png") == "tenants/acme/output/legacy/a.png"


def test_the_owner_of_a_real_subfolder():
    assert owner_of("tenants/acme/clips") == "acme"
    assert owner_of("tenants/acme") == "acme"
    assert owner_of("tenants") is None
    assert owner_of("clips") is None


def test_only_a_tenants_outputs_are_uploaded_each_once():
    files = [("output", "tenants/acme", "a.png"), ("temp", "tenants/acme", "p.png"), ("output", "tenants/acme",
                                                                                      "a.png")]
    assert uploaded_files("acme", files) == [("output", "tenants/acme", "a.png")]
    assert uploaded_files(None, files) == []
    assert uploaded_files("", files) == []


@pytest.mark.parametrize(("uploaded", "reachable", "on_disk", "served"), [
    (True, True, True, REDIRECT),
    (True, True, False, REDIRECT),
    (True, False, True, DISK),  # the bucket is down: disk, as without a bucket
    (False, True, True, DISK),  # the upload is still pending
    (False, False, False, DISK),  # nowhere to look: ComfyUI answers 404
    (False, True, False, LOOK),  # perhaps another instance uploaded it
])
def test_where_a_download_is_served_from(uploaded, reachable, on_disk, served):
    assert where_to_serve(uploaded=uploaded, reachable=reachable, on_disk=on_disk) == served


def test_converted_previews_and_single_channels_are_not_redirected():
    assert view_redirectable({"filename": "a.png"})
    assert view_redirectable({"filename": "a.png", "channel": "rgba"})
    assert not view_redirectable({"filename": "a.png", "preview": "webp;90"})
    assert not view_redirectable({"filename": "a.png", "channel": "a"})


def test_headers_the_bucket_is_asked_to_answer_with():
    assert content_type("a.mp4") == "video/mp4"
    assert content_type("a.unknownext") == "application/octet-stream"
    assert content_disposition("a.png", attachment=False) == 'inline; filename="a.png"'
    assert content_disposition("a.png", attachment=True) == 'attachment; filename="a.png"'
    assert content_disposition('x"y.png', attachment=True) == \
        "attachment; filename=\"x_y.png\"; filename*=UTF-8''x%22y.png"
    assert content_disposition("voix é.wav", attachment=False) == \
        "inline; filename=\"voix _.wav\"; filename*=UTF-8''voix%20%C3%A9.wav"


def test_local_disk_is_the_default_and_s3_settings_are_read():
    assert from_mapping({}, Path(".")).outputs.store == "local"
    outputs = from_mapping({"outputs": {**S3, "url_ttl_s": 60, "prefix": "prod/"}}, Path(".")).outputs
    assert (outputs.store, outputs.bucket, outputs.url_ttl_s, outputs.prefix) == ("s3", "outs", 60, "prod/")


@pytest.mark.parametrize(("outputs", "key"), [
    ({"store": "s3"}, "outputs.bucket"),
    ({**S3, "access_key": "only-the-id"}, "outputs.secret_key"),
    ({**S3, "endpoint": "127.0.0.1:8333"}, "outputs.endpoint"),
    ({**S3, "url_ttl_s": 604801}, "outputs.url_ttl_s"),  # SigV4 URLs live at most 7 days
    ({"store": "gcs"}, "outputs.store"),
])
def test_wrong_outputs_settings_name_the_key(outputs, key):
    with pytest.raises(ConfigError) as refused:
        from_mapping({"outputs": outputs}, Path("."))
    assert refused.value.key == key


def test_an_outbox_waits_out_the_failures_it_is_told_to_and_drops_others(tmp_path):
    class BucketDown(Exception):
        pass

    async def run() -> None:
        attempts: list[str] = []

        async def apply(write: dict) -> None:
            attempts.append(write["name"])
            if write["name"] == "broken":
                raise ValueError("never applies")
            if attempts.count(write["name"]) < 3:
                raise BucketDown("down")

        outbox = Outbox(tmp_path / "uploads.jsonl", apply, retry_on=(BucketDown,), what="object store")
        worker = asyncio.get_running_loop().create_task(outbox.run())
        outbox.put({"name": "broken"})
        outbox.put({"name": "a"})
        await asyncio.wait_for(outbox.drained(), 5)
        assert attempts == ["broken", "a", "a", "a"] and outbox.error == ""
        worker.cancel()
        outbox.close()

    asyncio.run(run())


def test_cdn_urls_carry_a_canned_policy_signature_the_key_pairs_public_key_verifies():
    """CloudFront's form: Expires, Signature (RSA-SHA1 over the canned policy, base64 with -_~ for +=/) and
    Key-Pair-Id appended to the URL; checked here with the public key, as the edge does."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    signer = CdnSigner("https://cdn.example.com/", "K2JCJMDEHXQW5F", pem)
    url = signer.sign("tenants/acme/output/clip 1.mp4", 300, 'attachment; filename="clip 1.mp4"', now=1_800_000_000)
    base, _, query = url.partition("&Expires=")
    assert base == ("https://cdn.example.com/tenants/acme/output/clip%201.mp4"
                    "?response-content-disposition=attachment%3B%20filename%3D%22clip%201.mp4%22")
    fields = dict(pair.split("=", 1) for pair in f"Expires={query}".split("&"))
    assert fields["Expires"] == "1800000300" and fields["Key-Pair-Id"] == "K2JCJMDEHXQW5F"
    statement = {"Resource": base, "Condition": {"DateLessThan": {"AWS:EpochTime": 1800000300}}}
    policy = json.dumps({"Statement": [statement]}, separators=(",", ":")).encode()
    signature = base64.b64decode(fields["Signature"].translate(str.maketrans("-_~", "+=/")))
    key.public_key().verify(signature, policy, padding.PKCS1v15(), hashes.SHA1())
    with pytest.raises(InvalidSignature):
        key.public_key().verify(signature, policy.replace(b"acme", b"other"), padding.PKCS1v15(), hashes.SHA1())


def test_a_cdn_needs_its_url_key_id_and_private_key():
    with pytest.raises(ConfigError) as refused:
        from_mapping({"outputs": {**S3, "cdn": {"url": "https://cdn.example.com", "key_id": "K1"}}}, Path("."))
    assert refused.value.key == "outputs.cdn.private_key_file"
    cdn = {"url": "https://cdn.example.com", "key_id": "K1", "private_key_file": "cdn.pem"}
    assert from_mapping({"outputs": {**S3, "cdn": cdn}}, Path(".")).outputs.cdn.key_id == "K1"


def test_the_files_an_executed_output_shows_are_its_output_and_temp_refs_each_once():
    output = {"images": [{"filename": "p_00001_.png", "subfolder": "tenants/acme", "type": "temp"},
                         {"filename": "p_00001_.png", "subfolder": "tenants/acme", "type": "temp"},
                         {"filename": "o_00001_.png", "subfolder": "tenants/acme/x", "type": "output"},
                         {"filename": "i.png", "subfolder": "", "type": "input"}],
              "text": ["not a ref"], "gifs": [{"filename": "g.webp", "type": "temp"}]}
    assert shown_files(output) == [("temp", "tenants/acme", "p_00001_.png"), ("output", "tenants/acme/x",
                                                                             "o_00001_.png"), ("temp", "", "g.webp")]
    assert shown_files(None) == [] and shown_files({"images": "odd"}) == []
    assert "temp" in bucket_folders(True) and "temp" not in bucket_folders(False)


def test_in_a_cluster_previews_and_outputs_up_to_a_size_are_put_as_they_are_shown():
    assert put_when_shown("temp", 10**9)
    assert put_when_shown("output", 5 * 1024 * 1024) and not put_when_shown("output", 10**9)
    assert not put_when_shown("input", 10)
