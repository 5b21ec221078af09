"""The guard's cost: a bare ComfyUI and a guarded one, side by side in one run, same requests interleaved.

Prints the median latency of POST /prompt (a trivial workflow) and GET /view on each, and their ratio.
With --busy, each server's worker runs a prompt that computes in Python all along (as a sampler's loop does) while
the requests are timed, and every trivial prompt is deleted from the queue again once timed.
Usage: .venv/bin/python scripts/bench_guard.py [--requests 300] [--busy]
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
from tests.harness.comfyui import TEST_NODES, ComfyUI
from tests.harness.tenants import seed

PORTRAIT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "media" / "portrait_astronaut_256.png"
TRIVIAL = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
           "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
SPIN_S = 240.0  # outlasts the timed requests (the `heavy` plan interrupts a prompt after 300 s)
SPIN = {"1": {"class_type": "TenancyTestSpin", "inputs": {"seconds": SPIN_S}}}


def timed(call):
    """(seconds, response) of one request that must succeed."""
    start = time.perf_counter()
    response = call()
    elapsed = time.perf_counter() - start
    if response.status_code != 200:
        raise SystemExit(f"{response.request.method} {response.url}: {response.status_code} {response.text[:300]}")
    return elapsed, response


def still_busy(client: ComfyClient) -> None:
    if not client.get("/queue").json()["queue_running"]:
        raise SystemExit(f"{client.url}: the busy prompt ended before the measurements did; ask fewer --requests")


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
    parser.add_argument("--busy", action="store_true", help="time the requests while each worker computes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bare = ComfyUI(Path(tmp) / "bare", with_plugin=False)
        bare.plugins = (("comfy_test_nodes", TEST_NODES),)  # the guarded one has them too
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
            if args.busy:
                for client in clients.values():
                    drained(client)
                    client.queue(SPIN)
                time.sleep(1.0)
            samples = {(name, route): [] for name in clients for route in ("prompt", "view")}
            turns = range(0, args.requests, args.block)
            for start in turns:  # the servers take turns: drift hits both alike
                for name, client in clients.items():
                    for _ in range(min(args.block, args.requests - start)):
                        elapsed, response = timed(lambda c=client: c.queue(TRIVIAL))
                        samples[(name, "prompt")].append(elapsed)
                        if args.busy:  # the busy worker would never reach it: keep the queue short
                            client.post("/queue", json={"delete": [response.json()["prompt_id"]]})
            for client in clients.values():  # idle: the prompts' execution (and accounting) ends before /view is timed
                if args.busy:
                    still_busy(client)
                else:
                    drained(client)
            for start in turns:
                for name, client in clients.items():
                    for _ in range(min(args.block, args.requests - start)):
                        elapsed, _ = timed(lambda c=client, n=name: c.get("/view", params=views[n]))
                        samples[(name, "view")].append(elapsed)
            if args.busy:
                for client in clients.values():
                    still_busy(client)
        finally:
            bare.stop()
            guarded.stop()
    print(f"{args.requests} interleaved requests per route and server, {'worker busy' if args.busy else 'worker idle'}")
    for route in ("prompt", "view"):
        b = statistics.median(samples[("bare", route)]) * 1000
        g = statistics.median(samples[("guarded", route)]) * 1000
        print(f"{route:<7} bare median {b:7.2f} ms   guarded median {g:7.2f} ms   ratio {g / b:5.3f}")


if __name__ == "__main__":
    main()
