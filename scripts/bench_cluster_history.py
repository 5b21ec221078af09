"""The cluster's shared history in Redis (`tenancy/store/cluster_history.py`): what recording a finished prompt
costs the worker, and what a tenant's reads cost with a full history (`history_items`, default 10000) and next to
another owner's full one: a page and one entry cost the same whatever the owner holds; all of an owner's entries
(what `/api/jobs` builds its answer from) cost what it holds. A real redis-server (AOF on, as the harness runs it)
on loopback; times are the mean of `--reads` calls, in this process.

    python scripts/bench_cluster_history.py [--entries 10000] [--reads 200]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tenancy.shared_history import Recorded, Retention, encode
from tenancy.store.cluster_history import ClusterHistory
from tests.harness.redis import RedisServer

ENTRY = {"prompt": [1, "x", {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64}},
                             "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0],
                                                                          "filename_prefix": "tenants/big/out"}}},
                    {"client_id": "c", "tenancy": {"tenant": "big", "plan": "basic"}}, ["2"]],
         "outputs": {"2": {"images": [{"filename": "out_00001_.png", "subfolder": "tenants/big", "type": "output"}]}},
         "status": {"status_str": "success", "completed": True, "messages": []}, "meta": {}}


def mean_ms(call, times: int) -> float:
    start = time.perf_counter()
    for _ in range(times):
        call()
    return (time.perf_counter() - start) / times * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10000)
    parser.add_argument("--reads", type=int, default=200)
    args = parser.parse_args()
    server = RedisServer(Path(tempfile.mkdtemp(prefix="bench-history-"))).start()
    try:
        history = ClusterHistory(server.url)
        record, kept = encode(Recorded(ENTRY)), Retention(args.entries, 0)
        start = time.perf_counter()
        for i in range(args.entries):
            history.record("big", f"p{i}", record, kept)
        recording = (time.perf_counter() - start) / args.entries * 1000
        for i in range(10):
            history.record("small", f"s{i}", record, kept)
        trimmed = history.record("big", "one-more", record, kept)
        print(f"record one finished prompt ({len(record)} B), owner at its cap: {recording:.3f} ms "
              f"(one past the cap trims {trimmed}; {len(history.ids('big'))} kept)")
        print(f"page of 64, owner with 10 (another with {args.entries}): "
              f"{mean_ms(lambda: history.page('small', 64, None), args.reads):.3f} ms")
        print(f"page of 64, owner with {args.entries}: "
              f"{mean_ms(lambda: history.page('big', 64, None), args.reads):.3f} ms")
        print(f"one entry, owner with {args.entries}: "
              f"{mean_ms(lambda: history.entry('big', 'p5000'), args.reads):.3f} ms")
        print(f"all entries, owner with {args.entries} (/api/jobs): "
              f"{mean_ms(lambda: history.everything('big'), max(args.reads // 10, 1)):.1f} ms")
        history.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
