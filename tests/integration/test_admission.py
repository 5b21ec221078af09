"""Admission on the real ComfyUI: quotas reserve and settle what prompts produce, concurrency caps, fair
priority between tenants, plan deadlines interrupt exactly the overrunning prompt, and metrics."""

from __future__ import annotations

import time

import pytest

from tests.conftest import FIXTURES
from tests.harness.client import ComfyClient

pytestmark = pytest.mark.comfy
BLOCKER_S = 600.0  # longer than any wait here: the tests end the blocker themselves (`release`)


def client(comfyui, short: str) -> ComfyClient:
    return ComfyClient(comfyui.url, comfyui.seeded.keys[short])


def sleep(seconds: float, tag: str = "") -> dict:
    return {"1": {"class_type": "TenancyTestSleep", "inputs": {"seconds": seconds, "tag": tag}}}


def params(duration: float) -> dict:
    return {"1": {"class_type": "TenancyTestParams", "inputs": {
        "steps": 20, "cfg": 7.0, "duration": duration, "width": 256, "model_name": "base.safetensors"}}}


def started_at(entry: dict) -> int:
    return next(m[1]["timestamp"] for m in entry["status"]["messages"] if m[0] == "execution_start")


def block_worker(operator: ComfyClient) -> str:
    """Keep ComfyUI's single worker busy until `release`, so that the prompts queued meanwhile wait together and
    then run in number order. (A blocker of fixed length once ended before a loaded machine had queued them.)"""
    wait_idle(operator)
    blocker = operator.queue(sleep(BLOCKER_S, "blocker")).json()["prompt_id"]
    deadline = time.monotonic() + 60
    while not any(item[1] == blocker for item in operator.get("/queue").json()["queue_running"]):
        assert time.monotonic() < deadline, "the blocker never started"
        time.sleep(0.05)
    return blocker


def release(operator: ComfyClient, blocker: str) -> None:
    """End the blocker now (it honours ComfyUI's interrupt flag); the prompts behind it start in order."""
    assert operator.post("/interrupt", json={"prompt_id": blocker}).status_code == 200
    operator.wait_history(blocker)


def wait_idle(operator: ComfyClient, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queue = operator.get("/queue").json()
        if not queue["queue_running"] and not queue["queue_pending"]:
            return
        time.sleep(0.2)
    raise TimeoutError("the queue did not drain")


def test_settle_charges_the_seconds_a_prompt_really_produced(comfyui, tenant_b):
    with (FIXTURES / "media" / "speech_en_16k.wav").open("rb") as handle:
        uploaded = tenant_b.post("/upload/image", files={"image": ("speech-admission.wav", handle)})
    assert uploaded.status_code == 200, uploaded.text
    before = tenant_b.get("/tenancy/me").json()["usage"]["used_seconds"]
    entry = tenant_b.run({"1": {"class_type": "LoadAudio", "inputs": {"audio": uploaded.json()["name"]}},
                          "2": {"class_type": "SaveAudio", "inputs": {"audio": ["1", 0], "filename_prefix": "adm"}}})
    assert entry["status"]["status_str"] == "success"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        usage = tenant_b.get("/tenancy/me").json()["usage"]
        if usage["used_seconds"] > before and usage["held_seconds"] == 0:
            break
        time.sleep(0.1)
    assert usage["used_seconds"] - before == pytest.approx(8.5, abs=0.3)


def test_quota_refuses_a_prompt_larger_than_what_is_left(comfyui):
    capped = client(comfyui, "capped")
    response = capped.queue(params(31.0))
    assert response.status_code == 429
    body = response.json()
    assert body["error"]["type"] == "quota_exceeded"
    assert body["error"]["extra_info"]["remaining_seconds"] == pytest.approx(30.0)


def test_concurrency_cap_counts_queued_and_running_prompts(comfyui, operator):
    capped = client(comfyui, "capped")
    blocker = block_worker(operator)
    first, second, third = (capped.queue(sleep(0.1, str(i))) for i in range(3))
    assert first.status_code == 200 and second.status_code == 200, (first.text, second.text)
    assert third.status_code == 429 and third.json()["error"]["type"] == "concurrency_limit"
    assert third.headers.get("Retry-After")
    release(operator, blocker)
    capped.wait_history(second.json()["prompt_id"])
    assert capped.queue(sleep(0.1, "after")).status_code == 200


def test_a_tenant_burst_does_not_starve_another_tenants_single_prompt(comfyui, operator):
    light, heavy = client(comfyui, "light"), client(comfyui, "heavy")
    blocker = block_worker(operator)
    burst = [light.queue(sleep(0.2, f"burst-{i}")).json()["prompt_id"] for i in range(20)]
    single = heavy.queue(sleep(0.2, "single")).json()["prompt_id"]
    release(operator, blocker)
    single_start = started_at(heavy.wait_history(single))
    light_starts = sorted(started_at(light.wait_history(pid, timeout=180)) for pid in burst)
    assert sum(start < single_start for start in light_starts) <= 1


def test_weights_four_to_one_interleave_four_to_one(comfyui, operator):
    light, heavy = client(comfyui, "light"), client(comfyui, "heavy")
    blocker = block_worker(operator)
    queued = [("light", light.queue(sleep(0.1, f"l{i}")).json()["prompt_id"]) for i in range(5)]
    queued += [("heavy", heavy.queue(sleep(0.1, f"h{i}")).json()["prompt_id"]) for i in range(20)]
    release(operator, blocker)
    who = {pid: name for name, pid in queued}
    starts = sorted((started_at(operator.wait_history(pid, timeout=180)), pid) for _, pid in queued)
    order = [who[pid] for _, pid in starts]
    first_ten = order[:10]
    assert first_ten.count("heavy") == 8 and first_ten.count("light") == 2, order


def test_plan_deadline_interrupts_only_the_overrunning_prompt(comfyui, tenant_b, operator):
    timeboxed = client(comfyui, "timeboxed")
    wait_idle(operator)
    slow = timeboxed.queue(sleep(9.0, "overrun"))
    assert slow.status_code == 200, slow.text
    after = tenant_b.queue(sleep(0.5, "next"))
    started = time.monotonic()
    entry = timeboxed.wait_history(slow.json()["prompt_id"], timeout=60)
    assert time.monotonic() - started < 8.5
    assert entry["status"]["status_str"] == "error"
    assert entry["status"]["tenancy_outcome"] == "timeout"
    following = tenant_b.wait_history(after.json()["prompt_id"], timeout=60)
    assert following["status"]["status_str"] == "success"
    assert comfyui.audit_line('"decision":"timeout"', slow.json()["prompt_id"])


def test_metrics_expose_requests_decisions_and_quotas(operator):
    text = operator.get("/tenancy/metrics").text
    for name in ("tenancy_requests_total", "tenancy_admission_decisions_total", "tenancy_quota_used_seconds",
                 "tenancy_queue_wait_seconds_bucket", "tenancy_store_seconds_bucket"):
        assert name in text, name
    assert 'reason="quota_exceeded"' in text


def test_health_is_public_and_terse(anonymous):
    assert anonymous.get("/tenancy/health").json() == {"status": "ok"}


def test_usage_export_sums_to_what_tenants_see(comfyui, tenant_b):
    import csv
    import io
    import subprocess
    import sys

    test_settle_charges_the_seconds_a_prompt_really_produced(comfyui, tenant_b)
    exported = subprocess.run([sys.executable, "-m", "tenancy", "usage", "--base-dir", str(comfyui.base), "--csv",
                               "--tenant", "tenant-b"], capture_output=True, text=True, check=True).stdout
    rows = list(csv.DictReader(io.StringIO(exported)))
    settled = sum(float(r["seconds"]) for r in rows if r["kind"] == "settle")
    assert settled == pytest.approx(tenant_b.get("/tenancy/me").json()["usage"]["used_seconds"], abs=0.01)
    assert any(r["outcome"] == "success" and float(r["seconds"]) > 8 for r in rows)


def test_prompt_rate_limit_answers_with_the_exact_wait(comfyui):
    throttled = client(comfyui, "throttled")
    answers = [throttled.queue(params(0.0)) for _ in range(8)]
    limited = [a for a in answers if a.status_code == 429]
    assert limited and all(a.json()["error"]["type"] == "rate_limited" for a in limited)
    assert 1 <= int(limited[0].headers["Retry-After"]) <= 10  # 6 per minute: one every 10 s
