"""A tenant's views as the server grows: a bare ComfyUI and a guarded one, side by side in one run.

Each server first holds --small-entries history entries (on the guarded one, --small-tenants tenants own 10 each),
then --large-entries (--large-tenants tenants); at each size the tenant that owns 10 entries reads /history,
/history?max_items=10, /queue, /api/jobs (where ComfyUI has it) and /object_info, the servers taking turns; the
bare server answers the same requests about its whole history. Then the worker is held by a long prompt while
--pending prompts of other tenants wait, and /queue and /api/jobs are read again. Prints medians and the
large/small ratio.
History is filled with one trivial workflow (EmptyImage -> PreviewImage) posted over HTTP: after the first run
ComfyUI serves it from its cache, so each entry costs the queue's own work, not an image's.
Usage: .venv/bin/python scripts/bench_views.py [--samples 30] [--large-entries 5000 --large-tenants 500]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tenancy import accounts
from tenancy import config as config_module
from tenancy.store import open_store
from tests.harness.client import ComfyClient
from tests.harness.comfyui import TEST_NODES, ComfyUI
from tests.harness.tenants import seed

TRIVIAL = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
           "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
HOLD = {"1": {"class_type": "TenancyTestSleep", "inputs": {"seconds": 3600.0, "tag": "hold"}}}
PER_TENANT = 10
ROUTES = ("/history", "/history?max_items=10", "/queue", "/api/jobs", "/object_info")
BUSY_ROUTES = ("/queue", "/api/jobs")  # read again while others' prompts wait
POSTERS = 4  # concurrent clients filling the history: the servers' own work sets the pace, not one client's


def add_tenants(base: Path, count: int) -> list[str]:
    """`count` tenants on the `heavy` plan (no quota, no rate limit that filling would hit), one key each."""
    settings = config_module.load(base / "user" / "tenancy" / config_module.CONFIG_FILE)

    async def work() -> list[str]:
        store = open_store(settings.store, settings.path("."))
        keys = []
        for n in range(count):
            await accounts.add_tenant(store, f"bench-{n:04d}", "heavy", settings.plans)
            keys.append((await accounts.create_key(store, f"bench-{n:04d}", "bench"))[0])
        await store.close()
        return keys

    return asyncio.run(work())


def post_all(jobs: list[tuple[ComfyClient, dict]]) -> list[str]:
    def post(job):
        response = job[0].queue(job[1])
        if response.status_code != 200:
            raise SystemExit(f"{job[0].url}/prompt: {response.status_code} {response.text[:300]}")
        return response.json()["prompt_id"]

    with ThreadPoolExecutor(POSTERS) as pool:
        return list(pool.map(post, jobs))


def drained(client: ComfyClient, timeout: float = 1800) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queue = client.get("/queue").json()
        if not queue["queue_running"] and not queue["queue_pending"]:
            return
        time.sleep(0.5)
    raise SystemExit(f"{client.url}: the queue did not drain in {timeout} s")


def fill(bare: ComfyClient, operator: ComfyClient, tenants: list[ComfyClient], entries: int, already: int) -> None:
    """Bare: `entries` in all; guarded: each tenant's up to PER_TENANT, the first tenant's first."""
    jobs = [(bare, TRIVIAL)] * (entries - already)
    jobs += [(tenant, TRIVIAL) for tenant in tenants[already // PER_TENANT:entries // PER_TENANT]
             for _ in range(PER_TENANT)]
    started = time.monotonic()
    post_all(jobs)
    for client in (bare, operator):  # a tenant's /queue shows only its own
        drained(client)
    held = [len(client.get("/history").json()) for client in (bare, operator)]
    if held != [entries, entries]:
        raise SystemExit(f"history holds {held} entries (bare, guarded), not {entries}")
    print(f"filled to {entries} entries in {time.monotonic() - started:.0f} s", flush=True)


def measure(clients: dict[str, ComfyClient], routes: list[str], samples: int) -> dict[tuple[str, str], float]:
    """(server, route) -> median milliseconds, the servers and routes taking turns."""
    times: dict[tuple[str, str], list[float]] = {(name, route): [] for name in clients for route in routes}
    for _ in range(samples):
        for route in routes:
            for name, client in clients.items():
                start = time.perf_counter()
                response = client.get(route)
                times[(name, route)].append(time.perf_counter() - start)
                if response.status_code != 200:
                    raise SystemExit(f"{name} {route}: {response.status_code} {response.text[:300]}")
    return {key: statistics.median(values) * 1000 for key, values in times.items()}


def busy_queue(clients: dict[str, ComfyClient], operator: ComfyClient, others: list[ComfyClient], pending: int,
               routes: list[str], samples: int) -> dict[tuple[str, str], float]:
    """`routes` while the worker is held and `pending` prompts of others wait (on bare: anyone's)."""
    holders = {"bare": clients["bare"], "guarded": operator}
    holds = {name: client.queue(HOLD).json()["prompt_id"] for name, client in holders.items()}
    for client in holders.values():  # running before the others are queued, so that they all wait
        while not client.get("/queue").json()["queue_running"]:
            time.sleep(0.1)
    jobs = [(clients["bare"], TRIVIAL)] * pending
    jobs += [(others[n // PER_TENANT], TRIVIAL) for n in range(pending)]
    post_all(jobs)
    try:
        return measure(clients, routes, samples)
    finally:
        for name, client in holders.items():
            client.post("/queue", json={"clear": True})
            client.post("/interrupt", json={"prompt_id": holds[name]})
            drained(client)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--small-entries", type=int, default=20)
    parser.add_argument("--large-entries", type=int, default=5000)
    parser.add_argument("--large-tenants", type=int, default=500)
    parser.add_argument("--pending", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bare = ComfyUI(Path(tmp) / "bare", with_plugin=False)
        bare.plugins = (("comfy_test_nodes", TEST_NODES),)  # the guarded one has them too
        guarded_base = Path(tmp) / "guarded"
        operator_key = seed(guarded_base).keys["admin"]
        keys = add_tenants(guarded_base, max(args.large_tenants, args.pending // PER_TENANT + 1))
        guarded = ComfyUI(guarded_base, env={"TENANCY_REQUIRE_GUARD": "1"})
        for server in (bare, guarded):
            (server.base / "custom_nodes").mkdir(parents=True, exist_ok=True)
            server.start()
        try:
            tenants = [ComfyClient(guarded.url, key) for key in keys]
            operator = ComfyClient(guarded.url, operator_key)
            clients = {"bare": ComfyClient(bare.url), "guarded": tenants[0]}
            routes = [r for r in ROUTES if all(c.get(r).status_code == 200 for c in clients.values())]
            results = {}
            fill(clients["bare"], operator, tenants, args.small_entries, 0)
            results["small"] = measure(clients, routes, args.samples)
            fill(clients["bare"], operator, tenants, args.large_entries, args.small_entries)
            results["large"] = measure(clients, routes, args.samples)
            busy = [r for r in BUSY_ROUTES if r in routes]
            results["pending"] = busy_queue(clients, operator, tenants[1:], args.pending, busy, args.samples)
        finally:
            bare.stop()
            guarded.stop()
    print(f"\nmedian ms of {args.samples} interleaved requests; the tenant owns {PER_TENANT} entries; "
          f"small: {args.small_entries} entries, large: {args.large_entries} entries "
          f"({args.large_tenants} tenants on the guarded server)")
    print(f"{'route':<24}{'bare small':>11}{'bare large':>11}{'ratio':>7}{'tenant small':>14}{'tenant large':>14}"
          f"{'ratio':>7}")
    rows = [(route, results["small"], results["large"], route) for route in routes]
    rows += [(f"{route}, {args.pending} pending", results["small"], results["pending"], route) for route in busy]
    for label, small, large, route in rows:
        b0, b1, g0, g1 = small[("bare", route)], large[("bare", route)], small[("guarded", route)], \
            large[("guarded", route)]
        print(f"{label:<24}{b0:11.2f}{b1:11.2f}{b1 / b0:7.2f}{g0:14.2f}{g1:14.2f}{g1 / g0:7.2f}")


if __name__ == "__main__":
    main()
