"""Tenants' uploads shared through the bucket in a cluster, the pure parts: the tenant's input prefix, which keys
name a file inside its input folder, and whether a listed object replaces the copy on this disk."""

from __future__ import annotations

from tenancy.outputs import bucket_folders, object_key
from tenancy.shared_inputs import Held, Listed, input_prefix, needs_fetch, relative_name

T = 1_700_000_000.0  # the bucket's Last-Modified of the listed object


def listed(etag: str = '"e1"', size: int = 10, modified: float = T) -> Listed:
    return Listed("tenants/acme/input/a.png", etag, size, modified)


def test_the_input_prefix_holds_exactly_the_keys_uploads_get():
    assert input_prefix("", "acme") == "tenants/acme/input/"
    assert input_prefix("/prod/", "acme") == "prod/tenants/acme/input/"
    for sub, name in (("tenants/acme", "a.png"), ("tenants/acme/masks/x", "m.png")):
        assert object_key("prod/", "acme", "input", sub, name).startswith(input_prefix("prod/", "acme"))
    assert not input_prefix("", "acme-2").startswith(input_prefix("", "acme"))  # no tenant's prefix holds another's


def test_a_key_names_a_file_inside_the_tenants_input_folder_or_nothing():
    prefix = input_prefix("", "acme")
    assert relative_name(prefix, "tenants/acme/input/a.png") == "a.png"
    assert relative_name(prefix, "tenants/acme/input/masks/x/m.png") == "masks/x/m.png"
    for key in ("tenants/other/input/a.png", "tenants/acme/output/a.png", "tenants/acme/input/",
                "tenants/acme/input/../../b/input/x.png", "tenants/acme/input/a/../b.png", "tenants/acme/input//a.png",
                "tenants/acme/input/./a.png", "tenants/acme/input/%2e%2e/a.png", "tenants/acme/input/a\\b.png"):
        assert relative_name(prefix, key) is None, key


def test_a_missing_file_is_fetched_and_the_one_this_process_holds_is_not_fetched_again():
    assert needs_fetch(listed(), None, None)
    assert needs_fetch(listed(), None, Held('"e1"', 10, int(T * 1e9)))  # deleted here since: fetched again
    assert not needs_fetch(listed(), (10, T), Held('"e1"', 10, int(T * 1e9)))
    # the same ETag: kept even when the local file changed since (written here later: it is the newer one)
    assert not needs_fetch(listed(), (12, T + 30), Held('"e1"', 10, int(T * 1e9)))


def test_an_object_changed_elsewhere_replaces_the_copy_unless_the_copy_is_newer():
    held = Held('"e0"', 10, int((T - 60) * 1e9))
    assert needs_fetch(listed(), (10, T - 60), held)  # overwritten in the bucket after this copy
    assert needs_fetch(listed(), (10, T + 0.4), held)  # within the same second: the bucket's clock ticks in seconds
    assert not needs_fetch(listed(), (10, T + 5), held)  # written here after the object: a put still on its way


def test_after_a_restart_a_current_copy_is_taken_as_it_and_an_older_one_is_replaced():
    assert not needs_fetch(listed(), (10, T), None)  # fetched (or put) before: its mtime is the object's
    assert not needs_fetch(listed(), (10, T + 3), None)
    assert needs_fetch(listed(), (10, T - 3), None)  # older than the object
    assert needs_fetch(listed(), (9, T + 0.5), None)  # other bytes within the object's second
    assert not needs_fetch(listed(), (9, T + 3), None)  # other bytes written here after it: kept, the newer


def test_uploads_are_served_from_the_bucket_only_in_a_cluster():
    assert bucket_folders(False) == ("output",)
    assert bucket_folders(True) == ("output", "input", "temp")  # in a cluster, previews too
