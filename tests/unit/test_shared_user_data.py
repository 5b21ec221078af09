"""Tenants' ComfyUI user data shared through the bucket in a cluster, the pure parts: the tenant's user prefix, what
a request changed in its folder, and what one listing asks of this disk (fetch, remove, leave alone)."""

from __future__ import annotations

from tenancy.shared_inputs import Held, Listed
from tenancy.shared_user_data import (
    DELETE,
    PUT,
    Changes,
    Local,
    changes,
    pending_names,
    sync_plan,
    user_key,
    user_prefix,
)

T = 1_700_000_000  # the bucket's Last-Modified of a listed object
NS = 1_000_000_000
PREFIX = user_prefix("", "acme")


def obj(name: str, etag: str = '"e1"', size: int = 10, modified: float = T) -> Listed:
    return Listed(PREFIX + name, etag, size, modified)


def test_the_user_prefix_holds_the_tenants_keys_and_nobody_elses():
    assert PREFIX == "tenants/acme/user/"
    assert user_prefix("/prod/", "acme") == "prod/tenants/acme/user/"
    assert user_key("prod/", "acme", "workflows/a.json") == "prod/tenants/acme/user/workflows/a.json"
    assert not user_prefix("", "acme-2").startswith(PREFIX)


def test_what_a_request_changed_is_read_from_the_folder_before_and_after():
    before = {"a.json": Local(3, 1 * NS), "b.json": Local(4, 2 * NS), "c.json": Local(5, 3 * NS)}
    after = {"a.json": Local(3, 1 * NS), "b.json": Local(4, 9 * NS), "d.json": Local(5, 3 * NS)}
    assert changes(before, after) == Changes(written=["b.json", "d.json"], gone=["c.json"])  # c moved to d
    assert changes(before, before) == Changes([], [])


def test_a_listing_fetches_what_this_disk_lacks_or_holds_older_and_nothing_it_holds():
    listed = [obj("new.json"), obj("old.json", '"e2"', modified=T + 5), obj("same.json")]
    on_disk = {"old.json": Local(10, T * NS), "same.json": Local(10, T * NS)}
    held = {"old.json": Held('"e1"', 10, T * NS), "same.json": Held('"e1"', 10, T * NS)}
    plan = sync_plan(PREFIX, listed, on_disk, held, set())
    assert [item.key for item in plan.fetch] == [PREFIX + "new.json", PREFIX + "old.json"]
    assert plan.remove == [] and plan.forget == []


def test_a_file_the_bucket_no_longer_has_is_removed_only_when_it_is_as_last_in_sync_here():
    on_disk = {"deleted.json": Local(10, T * NS), "rewritten.json": Local(12, (T + 9) * NS),
               "never-shared.json": Local(7, 5 * NS), "waiting.json": Local(10, T * NS)}
    held = {"deleted.json": Held('"e1"', 10, T * NS), "rewritten.json": Held('"e1"', 10, T * NS),
            "waiting.json": Held('"e1"', 10, T * NS), "vanished.json": Held('"e1"', 10, T * NS)}
    plan = sync_plan(PREFIX, [], on_disk, held, {"waiting.json"})
    assert plan.remove == ["deleted.json"]  # a write here since, one never in the bucket, one still waiting: kept
    assert plan.forget == ["vanished.json"]  # neither there nor here: nothing to remember


def test_a_name_with_a_write_waiting_in_the_outbox_is_not_fetched_over():
    plan = sync_plan(PREFIX, [obj("deleted-here.json")], {}, {}, {"deleted-here.json"})
    assert plan.fetch == []  # its delete waits in the outbox: not brought back meanwhile


def test_keys_outside_the_tenants_folder_are_never_followed():
    listed = [Listed("tenants/other/user/a.json", '"e"', 1, T), obj("../escape.json"), obj("a/../../b.json")]
    assert sync_plan(PREFIX, listed, {}, {}, set()).fetch == []


def test_the_outbox_names_waiting_are_the_tenants_own_user_data_writes():
    writes = [{"kind": PUT, "tenant": "acme", "name": "a.json"}, {"kind": DELETE, "tenant": "acme", "name": "b.json"},
              {"kind": PUT, "tenant": "other", "name": "c.json"},
              {"kind": "upload", "folder": "output", "subfolder": "", "filename": "x.png", "key": "k"}]
    assert pending_names(writes, "acme") == {"a.json", "b.json"}
