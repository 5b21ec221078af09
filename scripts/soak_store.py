"""A soak of the accounting through a store restart: many tenants, thousands of prompts over two guarded ComfyUI
instances on one redis-server (AOF on), which is restarted once in the middle while prompts execute.

Every prompt writes a known number of seconds of audio (`TenancyTestTone`). A prompt refused with 503
`store_unavailable` is sent again later, as a client would. At the end, once both instances' outboxes have drained,
the script reads every tenant's ledger and prints: prompts admitted, lost (admitted but never settled `success`),
charged twice, charged a wrong amount, holds left, usage that differs from the ledger; and each instance's memory
(RSS) after the warm-up and at the end. It exits 1 when anything was lost or mischarged.
Usage: .venv/bin/python scripts/soak_store.py [--prompts 5000] [--tenants 20]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tenancy import accounts
from tenancy import config as config_module
from tenancy.store.redis import RedisStore
from tests.harness.client import ComfyClient
from tests.harness.comfyui import ComfyUI
from tests.harness.redis import RedisServer
from tests.harness.tenants import seed, share_config

BATCH = 100  # prompts sent at once; the next batch goes when both queues are empty
SENDERS = 16
WARM_UP = 300


def tone(seconds: float, tag: str) -> dict:
    return {"1": {"class_type": "TenancyTestTone", "inputs": {"seconds": seconds, "delay": 0.0, "tag": tag}},
            "2": {"class_type": "SaveAudio", "inputs": {"audio": ["1", 0], "filename_prefix": f"soak/{tag}"}}}


def add_tenants(config_path: Path, url: str, count: int) -> dict[str, str]:
    """`count` tenants on the unlimited `light` plan: tenant id -> API key."""
    settings = config_module.load(config_path)

    async def work() -> dict[str, str]:
        store = RedisStore(url)
        keys = {}
        for i in range(count):
            tenant = f"soak-{i:02d}"
            await accounts.add_tenant(store, tenant, "light", settings.plans)
            keys[tenant], _ = await accounts.create_key(store, tenant, "soak")
        await store.close()
        return keys

    return asyncio.run(work())


def rss_mb(server: ComfyUI) -> float:
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class Soak:
    def __init__(self, servers: list[ComfyUI], keys: dict[str, str], admin_key: str) -> None:
        self.servers = servers
        self.tenants = sorted(keys)
        self.clients = {(t, i): ComfyClient(s.url, keys[t]) for t in self.tenants for i, s in enumerate(servers)}
        self.admins = [ComfyClient(s.url, admin_key) for s in servers]
        self.admitted: dict[str, tuple[str, float]] = {}  # prompt id -> (tenant, seconds)
        self.refusals = Counter()
        self.lock = threading.Lock()

    def send(self, n: int) -> bool:
        """Queue prompt number `n`; False when the store refused it (to be sent again)."""
        tenant = self.tenants[n % len(self.tenants)]
        seconds = round(0.1 * (1 + n % 7), 1)
        answer = self.clients[(tenant, (n // len(self.tenants)) % 2)].queue(tone(seconds, f"p{n:05d}"))
        if answer.status_code == 200:
            with self.lock:
                self.admitted[answer.json()["prompt_id"]] = (tenant, seconds)
            return True
        if answer.status_code == 503 and answer.json()["error"]["type"] == "store_unavailable":
            with self.lock:
                self.refusals["store_unavailable"] += 1
            return False
        raise SystemExit(f"prompt {n}: {answer.status_code} {answer.text[:300]}")

    def run(self, numbers: range, fault_at: int | None = None, fault=None) -> None:
        waiting = list(numbers)
        with concurrent.futures.ThreadPoolExecutor(SENDERS) as pool:
            while waiting:
                batch, waiting = waiting[:BATCH], waiting[BATCH:]
                if fault_at is not None and batch[0] <= fault_at < batch[0] + BATCH:
                    threading.Thread(target=fault, daemon=True).start()
                refused = [n for n, ok in zip(batch, pool.map(self.send, batch), strict=True) if not ok]
                waiting = refused + waiting
                self.drained()
                if refused:
                    time.sleep(0.5)  # the store is away: come back a little later, as Retry-After asks

    def drained(self, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        for admin in self.admins:
            while (queue := admin.get("/queue").json())["queue_running"] or queue["queue_pending"]:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{admin.url}: the queue did not drain in {timeout} s")
                time.sleep(0.1)

    def outboxes_empty(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while any(requests.get(s.url + "/tenancy/health", timeout=10).json() != {"status": "ok"}
                  for s in self.servers):
            if time.monotonic() > deadline:
                raise SystemExit("an outbox did not drain")
            time.sleep(0.2)


def audit(url: str, admitted: dict[str, tuple[str, float]], warm_up, tenants: list[str]) -> Counter:
    async def read():
        store = RedisStore(url)
        try:
            return {t: (await store.ledger(t), await store.holds(t)) for t in tenants}
        finally:
            await store.close()

    found = Counter()
    settles: Counter = Counter()
    for tenant, (ledger, holds) in asyncio.run(read()).items():
        found["holds left"] += len(holds)
        charged = {}
        for entry in ledger:
            if entry.kind == "settle":
                settles[entry.prompt_id] += 1
                charged[entry.prompt_id] = entry
        days = {e.day for e in ledger}
        usage = asyncio.run(_usage(url, tenant, days))
        if abs(usage - sum(e.seconds for e in charged.values())) > 1e-6:
            found["tenants whose usage differs from the ledger"] += 1
        for prompt_id, entry in charged.items():
            if prompt_id in warm_up:
                continue
            expected = admitted.get(prompt_id)
            if expected is None:
                found["settled but never admitted"] += 1
            elif entry.outcome != "success":
                found[f"settled {entry.outcome}"] += 1
            elif abs(entry.seconds - expected[1]) > 0.01:
                found["charged a wrong amount"] += 1
    found["lost"] = sum(1 for p in admitted if settles[p] == 0)
    found["charged twice"] = sum(1 for n in settles.values() if n > 1)
    return found


async def _usage(url: str, tenant: str, days: set[str]) -> float:
    store = RedisStore(url)
    try:
        return sum([(await store.usage(tenant, day)).used for day in days])
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts", type=int, default=5000)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--outage-s", type=float, default=3.0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tenancy-soak-"))
    redis_server = RedisServer(root / "redis").start()
    bases = [root / "instance-0", root / "instance-1"]
    seeded = seed(bases[0], {"store": redis_server.url})
    keys = add_tenants(seeded.config_path, redis_server.url, args.tenants)
    share_config(bases[1], bases[0])
    servers = [ComfyUI(base, env={"TENANCY_REQUIRE_GUARD": "1"}).start() for base in bases]
    try:
        soak = Soak(servers, keys, seeded.keys["admin"])

        backlog = [0]

        def restart() -> None:
            time.sleep(0.5)  # prompts of the batch are executing now
            redis_server.stop()
            away = time.monotonic() + args.outage_s
            while time.monotonic() < away:  # what waits in the instances' outboxes meanwhile
                health = [requests.get(s.url + "/tenancy/health", timeout=10).json() for s in servers]
                backlog[0] = max(backlog[0], sum(h.get("backlog", 0) for h in health))
                time.sleep(0.1)
            redis_server.start()

        soak.run(range(-WARM_UP, 0))
        soak.outboxes_empty()
        warm = [rss_mb(s) for s in servers]
        warm_up, soak.admitted = soak.admitted, {}
        started = time.monotonic()
        soak.run(range(args.prompts), fault_at=args.prompts // 2, fault=restart)
        soak.outboxes_empty()
        elapsed = time.monotonic() - started
        end = [rss_mb(s) for s in servers]
        found = audit(redis_server.url, soak.admitted, warm_up.keys(), soak.tenants)
        alive = all(s.process.poll() is None for s in servers)
    finally:
        for server in servers:
            server.stop()
        redis_server.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"{len(soak.admitted)} prompts admitted of {args.prompts} over {args.tenants} tenants and 2 instances "
          f"in {elapsed:.0f} s; redis-server restarted once ({args.outage_s:.0f} s away); "
          f"{soak.refusals['store_unavailable']} answers 503 store_unavailable (sent again); the outboxes held "
          f"up to {backlog[0]} writes")
    for name in ("lost", "charged twice", "charged a wrong amount", "holds left",
                 "tenants whose usage differs from the ledger", "settled but never admitted"):
        print(f"  {name}: {found[name]}")
    for name in sorted(k for k in found if k.startswith("settled ") and k != "settled but never admitted"):
        print(f"  {name}: {found[name]}")
    for i, (before, after) in enumerate(zip(warm, end, strict=True)):
        print(f"  instance {i} RSS: {before:.0f} MB after {WARM_UP} warm-up prompts, {after:.0f} MB at the end "
              f"({after / before:.3f}x)")
    print(f"  both ComfyUI processes alive throughout: {alive}")
    bad = any(found[k] for k in found) or len(soak.admitted) != args.prompts or not alive
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
