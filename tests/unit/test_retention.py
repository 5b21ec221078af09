"""Retention of outputs per plan: the rule over listings, whose tenants are swept, object keys back to files, what
a history entry's download links show, the settings; and the sweep of one instance's disk with a real SQLite store
(the bucket's side runs against a real S3 server in tests/integration/test_output_retention.py)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from tenancy.audit import AuditLog
from tenancy.comfy.execution.output_retention import OutputRetention
from tenancy.config import ConfigError, Plan, from_mapping
from tenancy.default_config import default_text
from tenancy.outputs import object_key
from tenancy.records import Tenant
from tenancy.retention import (
    DAY_S,
    bucket_claim_s,
    cutoff,
    days_of,
    expired,
    files_listed,
    finished_at,
    location_of_key,
    past,
    retained_tenants,
    tenant_output_prefix,
)
from tenancy.store import open_store

NOW = 1_795_305_600.0


def test_files_older_than_the_plans_days_are_expired_and_none_when_kept_for_ever():
    listing = [("a.png", NOW - 2 * DAY_S), ("b.png", NOW - DAY_S + 1), ("c.png", NOW - DAY_S - 1),
               ("d.png", NOW + 5)]
    assert expired(listing, NOW, 1) == ["a.png", "c.png"]
    assert expired(listing, NOW, 0) == []
    assert expired(listing, NOW, 3) == []
    assert cutoff(NOW, 0) is None and cutoff(NOW, 0.5) == NOW - DAY_S / 2
    # fractions of a day: seconds, as the integration test uses
    assert expired([("x", NOW - 11), ("y", NOW - 9)], NOW, 10 / DAY_S) == ["x"]
    assert past(NOW - 11, NOW, 10 / DAY_S) and not past(NOW - 9, NOW, 10 / DAY_S) and not past(0, NOW, 0)


def test_only_tenants_whose_plan_sets_output_days_are_swept():
    plans = {"keep": Plan(), "short": Plan(output_days=2), "tiny": Plan(output_days=0.25)}
    tenants = [Tenant("a", "keep"), Tenant("b", "short"), Tenant("c", "tiny", status="disabled"),
               Tenant("d", "gone-from-config")]
    assert retained_tenants(tenants, plans) == {"b": 2.0, "c": 0.25}
    assert days_of(plans, None) == 0 and days_of(plans, "gone-from-config") == 0 and days_of(plans, "short") == 2


@pytest.mark.parametrize("prefix", ["", "prod/", "/prod/x/"])
@pytest.mark.parametrize("subfolder", ["tenants/acme", "tenants/acme/clips", "tenants/acme/clips/2026"])
def test_an_objects_key_names_the_file_it_was_uploaded_from(prefix, subfolder):
    key = object_key(prefix, "acme", "output", subfolder, "out_00001_.png")
    assert key.startswith(tenant_output_prefix(prefix, "acme"))
    assert location_of_key(prefix, "acme", key) == ("output", subfolder, "out_00001_.png")


def test_keys_outside_the_tenants_output_prefix_are_not_its_files():
    assert location_of_key("", "acme", "tenants/acme/input/photo.png") is None
    assert location_of_key("", "acme", "tenants/acmex/output/a.png") is None
    assert location_of_key("", "acme", "tenants/beta/output/a.png") is None
    assert location_of_key("", "acme", "tenants/acme/output/folder/") is None
    assert location_of_key("p/", "acme", "tenants/acme/output/a.png") is None


def entry(*stamps_ms) -> dict:
    return {"outputs": {}, "status": {"status_str": "success", "completed": True,
                                      "messages": [["execution_start", {"prompt_id": "p", "timestamp": stamps_ms[0]}],
                                                   *[["execution_success", {"prompt_id": "p", "timestamp": t}]
                                                     for t in stamps_ms[1:]]]}}


def test_a_prompt_that_finished_before_the_cutoff_lists_no_download_links():
    finished = entry((NOW - 100) * 1000, (NOW - 90) * 1000)
    assert finished_at(finished) == NOW - 90
    assert not files_listed(finished, NOW, 60 / DAY_S)
    assert files_listed(finished, NOW, 120 / DAY_S)
    assert files_listed(finished, NOW, 0)
    for odd in ({}, {"status": None}, {"status": {"messages": [["x", {"timestamp": True}], "junk"]}}, None):
        assert finished_at(odd) is None and files_listed(odd, NOW, 1e-6)


def test_the_bucket_lock_lasts_most_of_a_period():
    assert bucket_claim_s(3600) == pytest.approx(3240) and 0 < bucket_claim_s(1) < 1


@pytest.mark.parametrize("bad, problem", [(-1, "out of range"), (40000, "out of range"), ("week", "expected float"),
                                          (True, "expected float")])
def test_output_days_must_be_a_number_of_days(bad, problem):
    with pytest.raises(ConfigError) as raised:
        from_mapping({"plans": {"basic": {"output_days": bad}}}, Path("/tmp"))
    assert raised.value.key == "plans.basic.output_days" and problem in raised.value.problem


def test_retention_settings_default_to_keeping_everything_and_sweeping_hourly():
    settings = from_mapping({"plans": {"short": {"output_days": 0.5}}, "outputs": {"sweep_s": 0}}, Path("/tmp"))
    assert settings.plans["short"].output_days == 0.5 and settings.outputs.sweep_s == 0
    assert from_mapping({}, Path("/tmp")).outputs.sweep_s == 3600
    assert all(plan.output_days == 0 for plan in from_mapping({}, Path("/tmp")).plans.values())
    with pytest.raises(ConfigError) as raised:
        from_mapping({"outputs": {"sweep_s": -5}}, Path("/tmp"))
    assert raised.value.key == "outputs.sweep_s"
    assert "  sweep_s: 3600.0" in default_text()  # documented in the file `init` writes


# the sweep of one instance's disk --------------------------------------------------------------------------------
def write(path: Path, age_s: float, now: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    os.utime(path, (now - age_s, now - age_s))
    return path


def test_a_sweep_deletes_only_old_outputs_of_tenants_with_retention_and_forgets_them(tmp_path):
    settings = from_mapping({"plans": {"short": {"output_days": 60 / DAY_S}, "keep": {}}}, tmp_path)
    now = 1_800_000_000.0
    out, other = tmp_path / "output", tmp_path / "input"
    old = write(out / "tenants/acme/clips/old_00001_.png", 120, now)
    old_top = write(out / "tenants/acme/old_top.png", 61, now)
    new = write(out / "tenants/acme/clips/new_00001_.png", 30, now)
    kept = write(out / "tenants/beta/old.png", 10_000, now)  # plan without retention
    operators = write(out / "admin_old.png", 10_000, now)  # outside tenants/: never swept
    upload = write(other / "tenants/acme/old_upload.png", 10_000, now)  # inputs are never swept
    outside = write(tmp_path / "elsewhere/secret.png", 10_000, now)
    (out / "tenants/acme/link.png").symlink_to(outside)  # a link is neither followed nor deleted
    forgotten = []

    async def run():
        store = open_store("sqlite:///store.db", tmp_path)
        await store.put_tenant(Tenant("acme", "short"), create=True)
        await store.put_tenant(Tenant("beta", "keep"), create=True)
        for sub, name in (("tenants/acme/clips", "old_00001_.png"), ("tenants/acme/clips", "new_00001_.png"),
                          ("tenants/acme", "old_top.png")):
            await store.index_output("output", sub, name, "acme", "p")
        audit = AuditLog(tmp_path / "audit.log", 1_000_000, 1)
        sweep = OutputRetention(settings, store, out, None, audit, forgotten.extend)
        try:
            first = await sweep.sweep(now=now)
            again = await sweep.sweep(now=now)
            owners = [await store.output_owner("output", "tenants/acme/clips", name)
                      for name in ("old_00001_.png", "new_00001_.png")]
        finally:
            audit.close()
            await store.close()
        return first, again, owners

    first, again, owners = asyncio.run(run())
    assert [(s.tenant, s.disk, s.bucket) for s in first] == [("acme", 2, 0)]
    assert [(s.tenant, s.disk, s.bucket) for s in again] == [("acme", 0, 0)]
    assert not old.exists() and not old_top.exists()
    assert all(p.exists() for p in (new, kept, operators, upload, outside)) and (out / "tenants/acme/link.png"). \
        is_symlink()
    assert sorted(forgotten) == [("output", "tenants/acme", "old_top.png"),
                                 ("output", "tenants/acme/clips", "old_00001_.png")]
    assert owners == [None, "acme"]
    lines = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert [(e["tenant"], e["decision"], e["disk"], e["bucket"]) for e in lines] == [("acme", "delete_outputs", 2, 0)]


def test_a_tenant_folder_that_is_a_link_out_of_the_output_folder_is_not_swept(tmp_path):
    settings = from_mapping({"plans": {"short": {"output_days": 1 / DAY_S}}}, tmp_path)
    now = 1_800_000_000.0
    outside = write(tmp_path / "elsewhere/precious.png", 10_000, now)
    (tmp_path / "output/tenants").mkdir(parents=True)
    (tmp_path / "output/tenants/acme").symlink_to(tmp_path / "elsewhere")

    async def run():
        store = open_store("sqlite:///store.db", tmp_path)
        await store.put_tenant(Tenant("acme", "short"), create=True)
        try:
            return await OutputRetention(settings, store, tmp_path / "output", None, None).sweep(now=now)
        finally:
            await store.close()

    assert [(s.tenant, s.disk) for s in asyncio.run(run())] == [("acme", 0)]
    assert outside.exists()


def test_comfyui_sweeps_every_sweep_s_and_not_at_all_with_0(tmp_path):
    """The loop ComfyUI runs: the first sweep after min(a minute, sweep_s), then every sweep_s; sweep_s 0 leaves
    it to the command line."""
    old = write(tmp_path / "output/tenants/acme/old.png", 2 * DAY_S, time.time())  # the loop sweeps at real time

    async def run(sweep_s: float, files_gone_within_s: float | None):
        settings = from_mapping({"plans": {"short": {"output_days": 1}}, "outputs": {"sweep_s": sweep_s}}, tmp_path)
        store = open_store("sqlite:///store.db", tmp_path)
        try:
            if await store.get_tenant("acme") is None:
                await store.put_tenant(Tenant("acme", "short"), create=True)
            loop = OutputRetention(settings, store, tmp_path / "output", None, None).run()
            if files_gone_within_s is None:
                await asyncio.wait_for(loop, 5)  # returns at once: nothing to run
                return
            task = asyncio.create_task(loop)
            try:
                for _ in range(int(files_gone_within_s / 0.05)):  # poll the disk: the condition, not a time
                    if not old.exists():
                        return
                    await asyncio.sleep(0.05)
                raise AssertionError(f"not swept within {files_gone_within_s} s")
            finally:
                task.cancel()
        finally:
            await store.close()

    asyncio.run(run(0, None))
    assert old.exists()
    asyncio.run(run(0.2, 10))
    assert not old.exists()
