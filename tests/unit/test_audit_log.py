"""The audit log: one JSON line per entry, secrets redacted, written in order by its own thread."""

from __future__ import annotations

import json

from tenancy.audit import AuditLog


def test_entries_are_written_in_order_with_secrets_redacted(tmp_path):
    log = AuditLog(tmp_path / "audit.log", max_bytes=1 << 20, backups=1)
    try:
        log.record(tenant="acme", route="POST /tenancy/token", password="hunter2", api_key="ct_x_y", status=200)
        cyclic: dict = {}
        cyclic["self"] = cyclic
        log.record(tenant="acme", detail=cyclic)  # cannot be serialised: dropped, the log goes on
        log.record(tenant="acme", rewrites=[{"node": "3", "input": "steps", "before": 50, "after": 25}], key_id="k1",
                   reason=None)
        log.flush()
    finally:
        log.close()
    lines = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert len(lines) == 2
    first, second = lines
    assert first["password"] == "[redacted]" and first["api_key"] == "[redacted]" and "hunter2" not in str(first)
    assert first["status"] == 200 and isinstance(first["time"], float)
    assert second["rewrites"][0]["after"] == 25 and second["key_id"] == "k1" and "reason" not in second
    assert first["time"] <= second["time"]


def test_the_log_rotates_by_size_and_keeps_its_backups(tmp_path):
    path = tmp_path / "audit.log"
    log = AuditLog(path, max_bytes=400, backups=2)
    try:
        for n in range(40):
            log.record(tenant="acme", n=n, pad="x" * 20)
            if n % 5 == 4:
                log.flush()  # several batches: rotation happens between them
        log.flush()
    finally:
        log.close()
    files = [path, tmp_path / "audit.log.1", tmp_path / "audit.log.2"]
    assert not (tmp_path / "audit.log.3").exists()
    assert all(f.exists() and 0 < f.stat().st_size <= 400 for f in files)
    kept = [json.loads(line)["n"] for f in reversed(files) for line in f.read_text().splitlines()]
    assert kept == sorted(kept) and kept[-1] == 39 and kept[0] > 0  # in order, newest kept, oldest dropped
