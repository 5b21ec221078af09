"""The execution-layer confinement's cost: three guarded ComfyUIs side by side in one run, one with the audit hook
(the default), two with TENANCY_EXEC_CONFINEMENT=off, the same 20-node prompt interleaved between them.

Prints the median execution time of the prompt (ComfyUI's own `execution_start` -> `execution_success` timestamps,
so HTTP and queueing are not on the clock) on each, the hook's ratio to the first server without it, the second
server without it against the first (the A/A ratio: how far two identical servers differ, the floor under which
the hook's ratio says nothing), and the hook's cost per file open a node makes.
Usage: .venv/bin/python scripts/bench_confinement.py [--prompts 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness.client import ComfyClient
from tests.harness.comfyui import ComfyUI
from tests.harness.tenants import seed

CHAIN = 17  # EmptyImage, 17 inversions, a save and a preview: 20 nodes


def prompt(color: int) -> dict:
    """20 small nodes; `color` changes the first, so none is answered from ComfyUI's cache."""
    graph = {"0": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1,
                                                          "color": color}}}
    for i in range(1, CHAIN + 1):
        graph[str(i)] = {"class_type": "ImageInvert", "inputs": {"image": [str(i - 1), 0]}}
    graph["save"] = {"class_type": "SaveImage", "inputs": {"images": [str(CHAIN), 0], "filename_prefix": "bench/x"}}
    graph["preview"] = {"class_type": "PreviewImage", "inputs": {"images": [str(CHAIN), 0]}}
    return graph


def execution_ms(entry: dict) -> float:
    stamps = {event: data.get("timestamp") for event, data in entry["status"]["messages"]}
    if entry["status"]["status_str"] != "success" or None in (stamps.get("execution_start"),
                                                              stamps.get("execution_success")):
        raise SystemExit(f"the prompt did not run: {entry['status']}")
    return stamps["execution_success"] - stamps["execution_start"]


def trimmed_mean(values: list[float], cut: float = 0.1) -> float:
    """The mean of the middle 80 %: finer than the median of whole milliseconds, deaf to the odd stall."""
    ordered = sorted(values)
    drop = int(len(ordered) * cut)
    return statistics.fmean(ordered[drop:len(ordered) - drop])


def open_cost_us(opens: int) -> tuple[float, float, float]:
    """µs per open+close without the hook, with it outside a tenant's prompt, and inside one (in this process, a
    file in the tenant's own folder: the usual case, the full check and allowed)."""
    from tenancy.comfy.execution import file_watch, tenant_execution
    from tenancy.confinement import Layout

    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.realpath(tmp)
        own = Path(root, "output", "tenants", "t")
        own.mkdir(parents=True)
        target = own / "x.png"
        target.write_bytes(b"x")
        layout = Layout({f: os.path.join(root, f) for f in ("input", "output", "temp")},
                        {"user": os.path.join(root, "user")}, {"models": os.path.join(root, "models")})

        def timed() -> float:
            start = time.perf_counter()
            for _ in range(opens):
                open(target, "rb").close()
            return (time.perf_counter() - start) / opens * 1e6

        without = timed()
        sys.addaudithook(file_watch.audit)
        outside = timed()
        token = tenant_execution.current_execution.set(tenant_execution.Execution(None, "t", None, {}, layout))
        try:
            inside = timed()
        finally:
            tenant_execution.current_execution.reset(token)
    return without, outside, inside


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        servers, clients = {}, {}
        off = {"TENANCY_EXEC_CONFINEMENT": "off"}
        for name, env in (("hook", {}), ("off", off), ("off again", off)):
            base = Path(tmp) / name
            key = seed(base).keys["heavy"]  # a plan whose limits the benchmark does not reach
            servers[name] = ComfyUI(base, env={"TENANCY_REQUIRE_GUARD": "1", **env}).start()
            clients[name] = ComfyClient(servers[name].url, key)
        try:
            samples = {name: [] for name in clients}
            for turn in range(-10, args.prompts):  # ten warm-up turns: the catalogue, imports, caches
                for name, client in clients.items():  # the servers take turns: drift hits both alike
                    elapsed = execution_ms(client.run(prompt(turn % 2**24)))
                    if turn >= 0:
                        samples[name].append(elapsed)
        finally:
            for server in servers.values():
                server.stop()
    print(f"{args.prompts} interleaved executions of a 20-node prompt per server (ComfyUI stamps whole ms)")
    for name, measure in (("median", statistics.median), ("trimmed mean", trimmed_mean)):
        hook, off, again = (measure(samples[server]) for server in ("hook", "off", "off again"))
        print(f"execution {name}: hook off {off:.2f} ms   hook on {hook:.2f} ms   ratio {hook / off:.3f}   "
              f"(A/A: hook off again {again:.2f} ms, ratio {again / off:.3f})")
    without, outside, inside = open_cost_us(20000)
    print(f"open()+close() of a file: {without:.2f} µs without the hook, {outside:.2f} µs with it outside a tenant's "
          f"prompt, {inside:.2f} µs inside one (+{inside - without:.2f} µs per open checked)")


if __name__ == "__main__":
    main()
