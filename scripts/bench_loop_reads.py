"""ComfyUI's own queue reads in a cluster (`cluster.enabled`), with Redis answering and with Redis paused.

One guarded ComfyUI on a real redis-server, its worker busy with an operator's long prompt and three of a tenant's
prompts queued. Timed: ComfyUI's `GET /queue` and `GET /prompt` (an operator's: ComfyUI's handlers), a tenant's
`GET /prompt` (the guard's count) and a tenant's `GET /system_stats` (no queue read), `--requests` each, sequential;
and the tenant's `GET /system_stats` sent 50 ms after an operator's `GET /prompt` (less those 50 ms: it measures
the wait for the loop).
Then Redis is paused (SIGSTOP): the first request waits out `store_timeout_s` (its credential is checked in Redis)
and the store counts as down for a minute (callers are recognised from memory); the same requests are timed again,
`--paused` each. A Redis read on ComfyUI's event loop costs the whole loop `store_timeout_s` then.

    .venv/bin/python scripts/bench_loop_reads.py [--requests 200] [--paused 3] [--timeout 2]

Run it in two checkouts to compare; it prints one line per request kind: median ms with Redis answering, and the
median while Redis is paused.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness.client import ComfyClient
from tests.harness.cluster import job, running_cluster, sleep
from tests.harness.redis import RedisServer
from tests.harness.waiting import wait_until


class Folders:
    """What the harness asks of pytest's tmp_path_factory."""

    def __init__(self, root: Path) -> None:
        self.root, self.count = root, 0

    def mktemp(self, name: str) -> Path:
        self.count += 1
        path = self.root / f"{name}-{self.count}"
        path.mkdir(parents=True)
        return path


def timed(call, times: int) -> float:
    """Median milliseconds of `times` sequential calls."""
    took = []
    for _ in range(times):
        start = time.perf_counter()
        answer = call()
        took.append((time.perf_counter() - start) * 1000)
        assert answer.status_code == 200, answer.text
    return statistics.median(took)


def beside(call, other):
    """`call`, sent 50 ms after `other` (sent from a thread: on the instance's loop by then)."""
    def both():
        thread = threading.Thread(target=other)
        thread.start()
        time.sleep(0.05)
        try:
            return call()
        finally:
            thread.join()
    return both


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--paused", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=2.0, help="store_timeout_s")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-loop-reads-") as scratch:
        folders = Folders(Path(scratch))
        server = RedisServer(folders.mktemp("redis")).start()
        cluster = {"enabled": True, "lease_s": 600.0, "heartbeat_s": 0.5, "reap_s": 0.5, "poll_s": 0.25}
        try:
            with running_cluster(folders, "bench", 1, {"store_timeout_s": args.timeout, "store_retry_s": 60.0,
                                                       "cluster": cluster}, server=server) as (workers, seeded, client):
                url = workers[0].url
                operator, light = ComfyClient(url, seeded.keys["admin"]), ComfyClient(url, seeded.keys["light"])
                blocker = operator.queue(sleep(600.0, "bench-block")).json()["prompt_id"]
                wait_until(lambda: job(client, blocker).get("started") == "1", what="the blocker")
                for i in range(3):
                    assert light.queue(sleep(0.1, f"bench{i}")).status_code == 200
                kinds = {"operator GET /queue": lambda: operator.get("/queue"),
                         "operator GET /prompt": lambda: operator.get("/prompt"),
                         "tenant GET /prompt": lambda: light.get("/prompt"),
                         "tenant GET /system_stats": lambda: light.get("/system_stats")}
                kinds["  the same, beside /prompt"] = beside(kinds["tenant GET /system_stats"],
                                                         kinds["operator GET /prompt"])
                answering = {kind: timed(call, args.requests) for kind, call in kinds.items()}
                server.process.send_signal(signal.SIGSTOP)
                try:
                    light.get("/system_stats")  # waits out the store's timeout: from now on, from memory
                    paused = {kind: timed(call, args.paused) for kind, call in kinds.items()}
                finally:
                    server.process.send_signal(signal.SIGCONT)
        finally:
            server.process.send_signal(signal.SIGCONT)
            server.stop()
    print(f"store_timeout_s {args.timeout}; medians in ms ({args.requests} requests answering, {args.paused} paused)")
    for kind in answering:
        print(f"{kind:<26} answering {answering[kind]:8.2f}   paused {paused[kind]:9.2f}")


if __name__ == "__main__":
    main()
