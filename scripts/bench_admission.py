"""Admission decisions per second on each store backend, and the Redis backend against redis-benchmark.

Runs the client (this process, and redis-benchmark when it is measured) and redis-server on one core, so that a
round trip hands that core from client to server and back (across two cores of this VM every hand-off wakes an
idle vCPU: redis-benchmark -c 1 falls from ~42k to ~16k calls/s). A decision is one reserve, one settle or one
GCRA hit: one EVALSHA round trip on Redis, on prompt ids never decided before (a retried reserve only replays
its first decision). The Redis ratio compares our decision rate with `redis-benchmark` calling the same script
by EVALSHA, with the same arguments, on the same server, with the same number of connections and no
pipelining: the fastest a client can ask that server for that decision, so the ratio is what our client costs
(our concurrent callers share one connection, whose commands leave together). Against a trivial script
(`return 1`) the ratio also counts the script's own work; it is printed second. redis-benchmark cannot settle
what it reserved, so reserve+settle has only that second ratio. Each round measures ours and redis-benchmark
one after the other, and a ratio printed is the median of the rounds' ratios (the machine's load drifts over
minutes). Rates are the best of --runs rounds (other load only slows a run down). The SQLite file and Redis's
AOF go to --dir, tmpfs by default, so that a busy disk does not stand in for the stores' own cost.

    python scripts/bench_admission.py [--pairs 5000] [--concurrency 50] [--runs 5] [--dir /dev/shm]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import io
import itertools
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis
from redis.utils import HIREDIS_AVAILABLE

from tenancy.records import ReserveRequest
from tenancy.store.protocol import KEPT_S
from tenancy.store.redis import RedisStore
from tenancy.store.redis_layout import admission_keys, reserve_arguments
from tenancy.store.redis_scripts import GCRA, RESERVE
from tenancy.store.sqlite import SqliteStore

TRIVIAL_SCRIPT = "return 1"
# A reservation of a new prompt, as the store sends it; `__rand_int__` makes the ids new (redis-benchmark -r)
BENCH_RESERVATION = ReserveRequest(tenant="bench", prompt_id="p__rand_int__", seconds=5.0, limit=-1,
                                   max_active=1_000_000, day="2026-11-22", deadline=9999999999.0, instance="bench")
RESERVE_CALL = (RESERVE.sha, "4", *admission_keys("bench", "__rand_int__"),
                *map(str, reserve_arguments(BENCH_RESERVATION, KEPT_S)))
BATCHES = itertools.count()  # each run of `pairs` takes prompt ids of its own


def pin(core: int):
    return lambda: os.sched_setaffinity(0, {core})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis(folder: Path, core: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
         "--appendfsync", "everysec", "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, preexec_fn=pin(core))
    client = redis.Redis(port=port)
    for _ in range(300):
        try:
            client.ping()
            return server, port
        except redis.ConnectionError:
            time.sleep(0.02)
    server.terminate()
    raise RuntimeError("redis-server did not start")


async def pairs(store, count: int, worker: int = 0) -> None:
    """Reserve and settle `count` prompts never seen before: a prompt id the store already decided on would
    only replay that decision (reserve is idempotent), which costs far less than deciding."""
    tenant, batch = f"bench{worker % 4}", next(BATCHES)
    for n in range(count):
        prompt_id = f"b{batch}-w{worker}-p{n}"
        await store.reserve(ReserveRequest(tenant=tenant, prompt_id=prompt_id, seconds=5.0, limit=-1,
                                           max_active=1_000_000, day="2026-11-22", deadline=time.time() + 3600,
                                           instance="bench"))
        await store.settle(tenant, prompt_id, 4.0, "success")


async def reserves(store, count: int, worker: int = 0) -> None:
    """Reserve `count` new prompts with redis-benchmark's arguments (BENCH_RESERVATION), settling none."""
    batch = next(BATCHES)
    for n in range(count):
        await store.reserve(dataclasses.replace(BENCH_RESERVATION, prompt_id=f"r{batch}-w{worker}-p{n}"))


async def gcra(store, count: int, worker: int = 0) -> None:
    for n in range(count):
        await store.rate_limit(f"bench:{worker}:{n % 64}", 0.001, 1000)


async def decisions_per_second(store, work, count: int, concurrency: int, per_call: int) -> float:
    """Run `work` in `concurrency` coroutines; returns decisions per second (per_call decisions each step)."""
    each = count // concurrency
    started = time.perf_counter()
    await asyncio.gather(*(work(store, each, worker) for worker in range(concurrency)))
    return each * concurrency * per_call / (time.perf_counter() - started)


def measure(open_store, work, count: int, concurrency: int, per_call: int, runs: int) -> float:
    async def once() -> float:
        store = open_store()
        try:
            await work(store, min(count, 500), 99)  # warm up: connections, scripts, caches
            return await decisions_per_second(store, work, count, concurrency, per_call)
        finally:
            await store.close()

    return max(asyncio.run(once()) for _ in range(runs))


def redis_benchmark(port: int, clients: int, requests: int, core: int, call: tuple = (), keyspace: int = 64) -> float:
    """Requests per second of redis-benchmark calling a script by EVALSHA (default: a trivial one); each
    `__rand_int__` in the call becomes a number below `keyspace`."""
    if not call:
        with redis.Redis(port=port) as client:
            call = (client.script_load(TRIVIAL_SCRIPT), "0")
    out = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-n", str(requests), "-c", str(clients), "-P", "1", "-r", str(keyspace),
         "--csv", "evalsha", *call], capture_output=True, text=True, check=True, preexec_fn=pin(core)).stdout
    return float(list(csv.reader(io.StringIO(out)))[-1][1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5_000, help="reserve+settle pairs per run")
    parser.add_argument("--concurrency", type=int, default=50,
                        help="concurrent callers in the second Redis run (50: redis-benchmark's default -c)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dir", default="/dev/shm" if Path("/dev/shm").is_dir() else None,
                        help="where the SQLite file and Redis's AOF go (default: tmpfs)")
    args = parser.parse_args()
    if shutil.which("redis-server") is None or shutil.which("redis-benchmark") is None:
        sys.exit("redis-server and redis-benchmark are needed (apt-get install redis-server redis-tools)")
    client_core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {client_core})
    n, c, runs = args.pairs, args.concurrency, args.runs
    print(f"client on core {client_core} of {os.cpu_count()}; load average "
          f"{os.getloadavg()[0]:.1f}; best of {runs} runs, ratios the median of {runs} rounds; "
          f"files in {args.dir or tempfile.gettempdir()}; "
          f"Python {sys.version.split()[0]}, redis-py {redis.__version__} "
          f"({'hiredis' if HIREDIS_AVAILABLE else 'pure-Python'} reply parser)")

    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        db = Path(folder) / "bench.db"
        sqlite_pairs = measure(lambda: SqliteStore(db), pairs, n, 1, 2, runs)
        sqlite_gcra = measure(lambda: SqliteStore(db), gcra, 2 * n, 1, 1, runs)
        print(f"sqlite  reserve+settle  {sqlite_pairs:9.0f} decisions/s ({sqlite_pairs / 2:.0f} pairs/s), 1 caller")
        print(f"sqlite  GCRA            {sqlite_gcra:9.0f} decisions/s, 1 caller")

        server, port = start_redis(Path(folder), client_core)
        try:
            rounds = redis_rounds(f"redis://127.0.0.1:{port}/0", port, n, c, client_core, runs)
        finally:
            server.terminate()
            server.wait(10)
    for clients in (1, c):
        for label, ours, same in (("reserve", "reserve", "bench reserve"), ("GCRA", "gcra", "bench gcra"),
                                  ("reserve+settle", "pairs", None)):
            ours, trivial = f"{ours} {clients}", f"bench {clients}"
            same = same and f"{same} {clients}"
            against_same = f"{ratio(rounds, ours, same):6.1%} of the same script ({best(rounds, same):.0f}/s), " \
                if same else ""
            print(f"redis   {label:15s} {best(rounds, ours):9.0f} decisions/s, {clients:2d} caller(s): "
                  f"{against_same:<38}{ratio(rounds, ours, trivial):6.1%} of a trivial script "
                  f"({best(rounds, trivial):.0f}/s)")
    print("        (redis-benchmark EVALSHA, as many connections as callers, -P 1, on the same server)")
    print("redis   server time per EVALSHA (INFO commandstats, median of rounds): "
          + ", ".join(f"{label} {statistics.median(r[f'server {name}'] for r in rounds):.1f} µs" for label, name in (
              ("trivial script", "bench 1"), ("reserve", "reserve 1"), ("reserve/settle", "pairs 1"),
              ("GCRA", "gcra 1"))))


def redis_rounds(url: str, port: int, n: int, c: int, core: int, runs: int) -> list[dict[str, float]]:
    """Each round measures our store and redis-benchmark one after the other, so that a ratio compares
    figures taken under the same load."""
    return [{**redis_round(url, port, n, 1, core), **redis_round(url, port, n, c, core)} for _ in range(runs)]


def redis_round(url: str, port: int, n: int, k: int, core: int) -> dict[str, float]:
    """Rates with `k` callers: ours for each kind of decision, then redis-benchmark on the same script."""
    def ours(work, count: int, per_call: int = 1):
        return lambda: measure(lambda: RedisStore(url), work, count, k, per_call, 1)

    gcra_call = (GCRA.sha, "1", "tn:rate:bench:__rand_int__", "0.001", "1000", "")
    return {
        **server_time(f"reserve {k}", port, ours(reserves, 2 * n)),
        **server_time(f"bench reserve {k}", port,
                      lambda: redis_benchmark(port, k, 4 * n, core, RESERVE_CALL, keyspace=10**8)),
        **server_time(f"gcra {k}", port, ours(gcra, 2 * n)),
        **server_time(f"bench gcra {k}", port, lambda: redis_benchmark(port, k, 4 * n, core, gcra_call)),
        **server_time(f"pairs {k}", port, ours(pairs, n, 2)),
        **server_time(f"bench {k}", port, lambda: redis_benchmark(port, k, 4 * n * (1 + (k > 1)), core)),
    }


def server_time(name: str, port: int, run) -> dict[str, float]:
    """`run()`'s rate under `name`, on an empty dataset (reservations pile up otherwise, and a later
    measurement would meet a larger one), and under `server <name>` Redis's own microseconds per EVALSHA
    meanwhile (INFO commandstats: the script and the commands it calls, not reading requests or writing replies)."""
    with redis.Redis(port=port) as client:
        client.flushall()  # scripts stay loaded
        client.config_resetstat()
        rate = run()
        return {name: rate, f"server {name}": client.info("commandstats")["cmdstat_evalsha"]["usec_per_call"]}


def best(rounds: list[dict[str, float]], name: str) -> float:
    return max(r[name] for r in rounds)


def ratio(rounds: list[dict[str, float]], ours: str, reference: str) -> float:
    """The median over rounds of our rate over the reference's in the same round."""
    return statistics.median(r[ours] / r[reference] for r in rounds)


if __name__ == "__main__":
    main()
