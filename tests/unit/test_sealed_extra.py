"""API-node tokens through the cluster queue: sealed for one prompt under a key from the master secret, opened only
with that key for that prompt; the body Redis holds never has them in the clear; bodies queued before sealing
existed still load."""

from __future__ import annotations

import json

from tenancy.cluster import Carried, carried
from tenancy.sealed_extra import seal, sealing_key, unseal

SECRET = b"the-installation-master-secret"
TOKENS = {"auth_token_comfy_org": "tok-7f3a9c", "api_key_comfy_org": "key-b41d22"}


def test_a_sealed_token_opens_for_its_prompt_with_the_shared_key_only():
    key = sealing_key(SECRET)
    sealed = seal(key, "p-1", TOKENS)
    assert "tok-7f3a9c" not in sealed and "key-b41d22" not in sealed
    assert unseal(sealing_key(SECRET), "p-1", sealed) == TOKENS  # another instance derives the same key
    assert unseal(key, "p-2", sealed) is None  # moved to another prompt
    assert unseal(sealing_key(b"another-installation"), "p-1", sealed) is None
    tampered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    assert unseal(key, "p-1", tampered) is None
    assert unseal(key, "p-1", "v1.not-base64!") is None
    assert unseal(key, "p-1", "") is None
    assert seal(key, "p-1", TOKENS) != sealed  # a fresh nonce each time


def test_the_key_is_its_own_purposes():
    key = sealing_key(SECRET)
    assert len(key) == 32
    assert key not in SECRET and SECRET not in key


def test_a_queue_item_carries_its_tokens_only_sealed_and_the_worker_gets_them_back():
    key = sealing_key(SECRET)
    item = (3, "p-1", {"1": {"class_type": "X", "inputs": {}}}, {"client_id": "c"}, ["1"], dict(TOKENS))
    body = carried(item, "basic", 100.0, seal(key, "p-1", item[5]))
    text = body.dumps()
    assert "tok-7f3a9c" not in text and "key-b41d22" not in text
    loaded = Carried.loads(text)
    assert loaded.queue_item(7, "p-1") == (7, "p-1", item[2], item[3], item[4], {})  # listing: nothing sensitive
    assert loaded.queue_item(7, "p-1", unseal(key, "p-1", loaded.sealed)) == (7, "p-1", *item[2:5], TOKENS)


def test_a_body_queued_before_sealing_existed_still_loads():
    old = json.dumps([{"1": {}}, {"client_id": "c"}, ["1"], "basic", 100.0])
    body = Carried.loads(old)
    assert (body.plan, body.sealed) == ("basic", None)
    assert body.queue_item(1, "p")[5] == {}
