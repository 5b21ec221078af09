"""The guard's cost: a bare ComfyUI and a guarded one, side by side in one run, same requests interleaved.

Prints the median latency of POST /prompt (a trivial workflow) and GET /view on each, and their ratio.
Usage: .venv/bin/python scripts/bench_guard.py [--requests 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness.client import ComfyClient
from tests.harness.comfyui import ComfyUI
from tests.harness.tenants import seed

PORTRAIT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "media" / "portrait_astronaut_256.png"
TRIVIAL = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
           "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}


def timed(call) -> float:
    start = time.perf_counter()
    response = call()
    elapsed = time.perf_counter() - start
    if response.status_code != 200:
        raise SystemExit(f"{response.request.method} {response.url}: {response.status_code} {response.text[:300]}")
    return elapsed


def drained(client: ComfyClient, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queue = client.get("/queue").json()
        if not queue["queue_running"] and not queue["queue_pending"]:
            time.sleep(1.0)  # the last prompt's history, previews and settlement
            return
        time.sleep(0.2)
    raise SystemExit(f"{client.url}: the queue did not drain in {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--block", type=int, default=1, help="requests per turn before switching servers")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bare = ComfyUI(Path(tmp) / "bare", with_plugin=False)
        guarded_base = Path(tmp) / "guarded"
        key = seed(guarded_base).keys["heavy"]  # a plan whose rate limits the benchmark does not hit
        guarded = ComfyUI(guarded_base, env={"TENANCY_REQUIRE_GUARD": "1"})
        for server in (bare, guarded):
            (server.base / "custom_nodes").mkdir(parents=True, exist_ok=True)
            server.start()
        try:
            clients = {"bare": ComfyClient(bare.url), "guarded": ComfyClient(guarded.url, key)}
            uploads = {name: c.upload_image(PORTRAIT).json() for name, c in clients.items()}
            views = {name: {"filename": u["name"], "subfolder": u["subfolder"], "type": u["type"]}
                     for name, u in uploads.items()}
            for name, client in clients.items():  # warm-up: catalogue, caches, connections
                for _ in range(20):
                    client.queue(TRIVIAL)
                    client.get("/view", params=views[name])
            samples = {(name, route): [] for name in clients for route in ("prompt", "view")}
            turns = range(0, args.requests, args.block)
            for start in turns:  # the servers take turns: drift hits both alike
                for name, client in clients.items():
                    for _ in range(min(args.block, args.requests - start)):
                        samples[(name, "prompt")].append(timed(lambda c=client: c.queue(TRIVIAL)))
            for client in clients.values():  # the prompts' execution (and accounting) is over before /view
                drained(client)
            for start in turns:
                for name, client in clients.items():
                    for _ in range(min(args.block, args.requests - start)):
                        samples[(name, "view")].append(timed(lambda c=client, n=name: c.get("/view", params=views[n])))
        finally:
            bare.stop()
            guarded.stop()
    print(f"{args.requests} interleaved requests per route and server")
    for route in ("prompt", "view"):
        b = statistics.median(samples[("bare", route)]) * 1000
        g = statistics.median(samples[("guarded", route)]) * 1000
        print(f"{route:<7} bare median {b:7.2f} ms   guarded median {g:7.2f} ms   ratio {g / b:5.3f}")


if __name__ == "__main__":
    main()
