"""Store faults with real processes: two ComfyUI instances on one redis-server (AOF on) that is stopped, paused and
restarted while prompts execute; a SQLite store locked by another process; a ComfyUI killed mid-prompt.

In every case no ComfyUI process exits, every answer during the fault is a 503 `store_unavailable` with
Retry-After or a served request, admission resumes within seconds of the store's return, and once the outbox has
drained every prompt that wrote output is charged exactly its measured seconds, once, with no hold left."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import random
import signal
import sqlite3
import threading
import time

import pytest
import requests
import websocket

from tenancy.store.redis import RedisStore
from tests.harness.client import ComfyClient
from tests.harness.comfyui import ComfyUI
from tests.harness.redis import RedisServer
from tests.harness.service import start_instances
from tests.harness.tenants import seed
from tests.harness.waiting import wait_until

pytestmark = pytest.mark.comfy
TENANT = "tenant-light"  # unlimited seconds, 50 prompts at once: only the faults refuse work here
RETURNS_WITHIN_S = 5.0


def tone(seconds: float, tag: str, delay: float = 0.2) -> dict:
    """A prompt that writes `seconds` of audio (its measured charge) after `delay` seconds of work."""
    return {"1": {"class_type": "TenancyTestTone", "inputs": {"seconds": seconds, "delay": delay, "tag": tag}},
            "2": {"class_type": "SaveAudio", "inputs": {"audio": ["1", 0], "filename_prefix": f"fault/{tag}"}}}


@pytest.fixture(scope="module")
def redis_aof(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("fault-redis")).start()
    yield server
    server.process.send_signal(signal.SIGCONT)  # never leave a paused server behind
    server.stop()


@pytest.fixture(scope="module")
def instances(tmp_path_factory, redis_aof):
    servers, seeded = start_instances(tmp_path_factory, "fault-instance", 2, {"store": redis_aof.url})
    yield servers, seeded
    for server in servers:
        server.stop()


def refused_for_the_store(answer: requests.Response) -> bool:
    return answer.status_code == 503 and answer.json()["error"]["type"] == "store_unavailable" \
        and int(answer.headers["Retry-After"]) > 0


def healthy(server: ComfyUI) -> bool:
    """The store answers and the instance's outbox is empty."""
    return requests.get(server.url + "/tenancy/health", timeout=10).json() == {"status": "ok"}


def store_state(url: str, tenant: str) -> tuple[list, list, object]:
    async def read():
        store = RedisStore(url)
        try:
            ledger = await store.ledger(tenant)
            return ledger, await store.holds(tenant), await store.usage(tenant, ledger[0].day)
        finally:
            await store.close()

    return asyncio.run(read())


def assert_charged_exactly(url: str, expected: dict[str, float]) -> None:
    """Each admitted prompt: one settle of its measured seconds; usage is their sum, nothing held."""
    ledger, holds, usage = store_state(url, TENANT)
    settles = [e for e in ledger if e.kind == "settle"]
    assert sorted(e.prompt_id for e in settles) == sorted(expected), "a prompt settled twice or never"
    for entry in settles:
        assert entry.seconds == pytest.approx(expected[entry.prompt_id], abs=0.01), entry
        assert entry.outcome == "success", entry
    assert holds == [] and usage.held == 0 and usage.active == 0
    assert usage.used == pytest.approx(sum(e.seconds for e in settles))
    assert sum(e.seconds for e in settles) == pytest.approx(sum(expected.values()), abs=0.05)


def written_outputs(servers, tag: str) -> int:
    """Audio files both instances wrote for this burst."""
    return sum(len(list((s.base / "output" / "tenants" / TENANT / "fault").glob(f"{tag}-*"))) for s in servers)


def reset_account(url: str) -> None:
    """Each fault starts from an empty account: the ledger and usage of the test tenant are dropped."""
    import redis

    with redis.Redis.from_url(url) as client:
        for key in client.scan_iter(f"tn:{{{TENANT}}}:*"):
            client.delete(key)


@pytest.mark.parametrize("fault", ["stopped", "paused"])
def test_a_redis_fault_mid_burst_stops_no_instance_and_every_second_that_ran_is_charged_once(
        instances, redis_aof, fault):
    servers, seeded = instances
    reset_account(redis_aof.url)
    clients = [ComfyClient(s.url, seeded.keys["light"]) for s in servers]
    assert all(c.get("/tenancy/me").json()["stale"] is False for c in clients)  # each instance knows the key
    seed_value = random.randrange(1 << 30)
    chooser = random.Random(seed_value)
    start_after_s, lasts_s = chooser.uniform(0.3, 2.5), chooser.uniform(3.0, 6.0)
    context = f"fault={fault} seed={seed_value} start={start_after_s:.2f}s lasting={lasts_s:.2f}s"
    listener = Listener(clients[0])  # websocket routing must go on through the fault
    fault_thread = threading.Thread(target=outage, args=(redis_aof, fault, start_after_s, lasts_s))
    fault_thread.start()
    admitted: dict[str, tuple[float, ComfyClient]] = {}
    refused, slowest = 0, 0.0
    tag = f"{fault}{seed_value}"
    for i in range(30):
        seconds = round(0.5 + 0.1 * i, 1)
        started = time.monotonic()
        answer = clients[i % 2].queue(tone(seconds, f"{tag}-{i:02d}"), client_id=listener.sid if i % 2 == 0 else "")
        slowest = max(slowest, time.monotonic() - started)
        if answer.status_code == 200:
            admitted[answer.json()["prompt_id"]] = (seconds, clients[i % 2])
        else:
            assert refused_for_the_store(answer), (context, answer.status_code, answer.text)
            refused += 1
            served_from_memory(clients[i % 2], context)
        time.sleep(0.25)
    fault_thread.join()
    assert all(server.process.poll() is None for server in servers), context
    assert refused > 0, f"the burst never met the fault: {context}"
    assert slowest < 3.0, f"a request waited {slowest:.1f} s on the store: {context}"
    after = wait_until(lambda: admitted_now(clients[0], tone(0.5, f"{tag}-after"), client_id=listener.sid),
                       RETURNS_WITHIN_S,
                       f"admission did not resume: {context}")
    admitted[after.json()["prompt_id"]] = (0.5, clients[0])
    for prompt_id, (_, client) in admitted.items():
        assert client.wait_history(prompt_id, timeout=90)["status"]["status_str"] == "success", context
    for server in servers:
        wait_until(lambda server=server: healthy(server), 30, f"{server.url} did not drain its outbox: {context}")
    assert_charged_exactly(redis_aof.url, {pid: seconds for pid, (seconds, _) in admitted.items()})
    heard = listener.close()
    assert {pid for pid, (_, client) in admitted.items() if client is clients[0]} <= heard, context
    assert written_outputs(servers, tag) == len(admitted), f"output of a refused prompt exists: {context}"


class Listener:
    """The tenant's editor: a websocket collecting the ids of the prompts it hears finish (`executed`)."""

    def __init__(self, client: ComfyClient) -> None:
        self.socket = client.websocket("fault")
        self.sid = json.loads(self.socket.recv())["data"]["sid"]
        self.heard: set[str] = set()
        self.thread = threading.Thread(target=self._listen, daemon=True)
        self.thread.start()

    def _listen(self) -> None:
        try:
            while True:
                message = self.socket.recv()
                if not message:
                    return  # closed
                if isinstance(message, str):
                    event = json.loads(message)
                    if event["type"] == "executed":
                        self.heard.add(event["data"]["prompt_id"])
        except (websocket.WebSocketException, OSError):
            return  # closed

    def close(self) -> set[str]:
        self.socket.close()
        self.thread.join(10)
        return self.heard


def outage(server: RedisServer, fault: str, start_after_s: float, lasts_s: float) -> None:
    time.sleep(start_after_s)
    if fault == "stopped":
        server.stop()
        time.sleep(lasts_s)
        server.start()
    else:
        server.process.send_signal(signal.SIGSTOP)
        time.sleep(lasts_s)
        server.process.send_signal(signal.SIGCONT)


def served_from_memory(client: ComfyClient, context: str) -> None:
    """Reads the guard can answer without the store: who the caller is (marked stale), its own queue and history
    (prompt owners are in memory); or, when the store came back meanwhile, the same reads fresh."""
    me = client.get("/tenancy/me")
    assert me.status_code == 200, (context, me.text)
    assert me.json()["stale"] or me.json()["usage"] is not None, context
    for path in ("/queue", "/history"):
        answer = client.get(path)
        assert answer.status_code == 200, (context, path, answer.text)


def admitted_now(client: ComfyClient, workflow: dict, **body) -> requests.Response | None:
    answer = client.queue(workflow, **body)
    return answer if answer.status_code == 200 else None


def test_a_sqlite_store_locked_by_another_process_answers_503_fast_then_recovers(comfyui, tenant_b):
    database = comfyui.base / "user" / "tenancy" / "tenancy.db"
    other = sqlite3.connect(database, isolation_level=None, timeout=10)
    other.execute("BEGIN IMMEDIATE")  # what a stuck CLI or another ComfyUI holding the write lock looks like
    try:
        deadline = time.monotonic() + 10
        answers = []
        while time.monotonic() < deadline:
            started = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                batch = list(pool.map(lambda _: tenant_b.queue(tone(0.2, "locked")), range(4)))
            answers.append((time.monotonic() - started, batch))
        for took, batch in answers:
            assert all(refused_for_the_store(a) for a in batch), [a.text for a in batch]
            assert took < 2.5, f"four requests took {took:.1f} s while the store was locked"
        assert tenant_b.get("/queue").status_code == 200  # reads need no write lock: still served
        assert comfyui.process.poll() is None
    finally:
        other.execute("ROLLBACK")
        other.close()
    resumed = wait_until(lambda: (a := tenant_b.queue(tone(0.2, "unlocked"))).status_code == 200 and a,
                         RETURNS_WITHIN_S, "admission did not resume after the lock was released")
    tenant_b.wait_history(resumed.json()["prompt_id"])


def test_a_comfyui_killed_mid_prompt_charges_what_started_and_refunds_what_waited(tmp_path):
    base = tmp_path / "crashing"
    seeded = seed(base)
    server = ComfyUI(base, env={"TENANCY_REQUIRE_GUARD": "1"}).start()
    tenant = ComfyClient(server.url, seeded.keys["b"])
    socket = tenant.websocket("crash")
    sid = json.loads(socket.recv())["data"]["sid"]
    running = tenant.queue(tone(5.0, "running", delay=60.0), client_id=sid).json()["prompt_id"]
    waiting = tenant.queue(tone(3.0, "waiting"), client_id=sid).json()["prompt_id"]
    socket.settimeout(30)
    while True:  # the guard has noted the start once the owner's socket hears of it
        message = json.loads(socket.recv())
        if message["type"] == "execution_start" and message["data"]["prompt_id"] == running:
            break
    socket.close()
    server.kill()
    restarted = ComfyUI(base, env={"TENANCY_REQUIRE_GUARD": "1"}, port=server.port).start()
    try:
        tenant = ComfyClient(restarted.url, seeded.keys["b"])
        usage = wait_until(lambda: (u := tenant.get("/tenancy/me").json()["usage"])["held_seconds"] == 0 and u,
                           30, "the restarted instance did not settle the crashed one's holds")
        assert usage["used_seconds"] == pytest.approx(5.0) and usage["active"] == 0
        assert restarted.audit_line('"outcome":"lost_charged"', running)
        assert restarted.audit_line('"outcome":"reaped"', waiting)
        assert os.listdir(restarted.base / "user" / "tenancy" / "outbox")  # the outbox file is there, emptied
    finally:
        restarted.stop()
