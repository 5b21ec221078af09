"""The audit log: one JSON line per entry, secrets redacted, written in order by its own thread; searched newest
first through its rotated files."""

from __future__ import annotations

import json

from tenancy.audit import AuditLog, search_audit


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


def write(path, entries):
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))


def test_audit_search_goes_newest_first_through_rotated_files(tmp_path):
    log = tmp_path / "audit.log"
    write(tmp_path / "audit.log.2", [{"time": 1, "decision": "allow", "tenant": "a"}])
    write(tmp_path / "audit.log.1", [{"time": 2, "decision": "refuse", "tenant": "b", "route": "POST /prompt"},
                                     {"time": 3, "decision": "refuse", "tenant": "a", "route": "GET /view"}])
    write(log, [{"time": 4, "decision": "allow", "tenant": "a"}, {"time": 5, "decision": "admin", "action": "x"}])
    with log.open("a") as handle:
        handle.write("not json\n\n")
    entries, _ = search_audit(log, {}, "", None, 100)
    assert [e["time"] for e in entries] == [5, 4, 3, 2, 1]
    assert [e["time"] for e in search_audit(log, {"tenant": "a"}, "", None, 100)[0]] == [4, 3, 1]
    assert [e["time"] for e in search_audit(log, {"decision": "refuse"}, "/prompt", None, 100)[0]] == [2]
    assert [e["time"] for e in search_audit(log, {}, "", 3, 100)[0]] == [5, 4, 3]
    assert [e["time"] for e in search_audit(log, {}, "", None, 2)[0]] == [5, 4]
    assert search_audit(tmp_path / "missing.log", {}, "", None, 10) == ([], 0)


def test_audit_search_handles_lines_across_chunk_boundaries(tmp_path):
    log = tmp_path / "audit.log"
    entries = [{"time": i, "decision": "allow", "pad": "x" * (i % 97) * 50} for i in range(3000)]
    write(log, entries)
    found, scanned = search_audit(log, {}, "", None, 5000)
    assert [e["time"] for e in found] == list(range(2999, -1, -1)) and scanned == 3000
