"""Makespan of a mixed burst on three guarded ComfyUI instances: one cluster queue against local queues behind a
round-robin balancer, and against the ideal (total work / 3), in one run.

The queue knows each prompt's length: the config's `estimates` table gives the sleep node the rule
`seconds_input: seconds` (as a pack declares it for a node whose work follows an input, such as seconds of
audio or video), so fair shares are weighted by estimated seconds and `cluster.lookahead` can see which prompts are
long. `--lookahead 1 3` runs the global queue once per value (3 by default), `--no-estimates` leaves the table
out, `--no-local` the round-robin run.

`--models M` makes it a mixed-model burst: each prompt works on one of M models (seeded, uniformly), with the
test node pack's TenancyTestModel, which simulates a GPU holding one model at a time: a prompt on another model
than its worker's last one first loads it (`--load-s` seconds; each load logged, and counted per run). The global
queue then runs once per `--affinity` value (`cluster.affinity_s`, 0: off; default 0 and 10), and the report adds
the loads of each run and an ideal that loads each model once (at least one load per instance).

The burst: `--prompts` prompts from `--tenants` tenants on one plan (weight 1, no cap that binds), arriving in a
seeded shuffled order; each prompt is the test sleep node, so its length is known and costs no CPU. Tenants differ
in length (0.4 s to 2.6 s on average, each prompt within +/-50 % of its tenant's mean): the uneven mix a studio
sends. Both modes get the same burst, dealt in the same order to the same three instances in turn (a balancer
without stickiness): with the cluster queue a prompt accepted anywhere runs on whichever worker is idle first;
with local queues it waits for the instance it was dealt to. The instances run one at a time per mode (a ComfyUI
start is CPU-heavy) on one redis-server (AOF on) that is their shared store either way.

The makespan runs from the first POST /prompt to the last `execution_success` any instance records (ComfyUI's
history timestamps, read with an operator key). The ideal is the sum of the sleeps over three workers: it leaves
out every per-prompt cost (admission, hand-out, execution) and the tail a list schedule cannot avoid.

    nice -n 19 .venv/bin/python scripts/bench_cluster.py [--prompts 60] [--tenants 6] [--scale 1.0] [--seed 7]
        [--lookahead 3 ...] [--no-estimates] [--no-local] [--models 4 [--load-s 2] [--affinity 0 10 ...]]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import heapq
import itertools
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml

from tenancy import accounts
from tenancy import config as config_module
from tenancy.store import open_store
from tests.harness.client import ComfyClient
from tests.harness.comfyui import ComfyUI
from tests.harness.redis import RedisServer
from tests.harness.tenants import seed, share_config

INSTANCES = 3
TENANT_MEANS_S = (0.4, 0.6, 0.9, 1.3, 1.8, 2.6)  # tenant i's mean prompt length (cycled past six tenants)
BENCH_PLAN = {"weight": 1, "max_concurrent": 1000, "daily_seconds": -1, "prompts_per_minute": 100000,
              "max_execution_s": 600}
ENV = {"TENANCY_REQUIRE_GUARD": "1", "OMP_NUM_THREADS": "1"}
DRAIN_TIMEOUT_S = 600
LOCAL_RUN = "local queues, round-robin"
ESTIMATES = {"TenancyTestSleep": {"seconds_input": "seconds"},  # the queue knows each prompt's length
             "TenancyTestModel": {"seconds_input": "seconds"}}  # (its work; not the load, which depends)


@dataclass(frozen=True)
class Prompt:
    tenant: int
    seconds: float
    tag: str
    model: str = ""  # a checkpoint name: the prompt runs on it, loading it first where its worker holds another
    load_s: float = 0.0

    def workflow(self) -> dict:
        if self.model:
            return {"1": {"class_type": "TenancyTestModel", "inputs": {
                "ckpt_name": self.model, "load_s": self.load_s, "seconds": self.seconds, "tag": self.tag}}}
        return {"1": {"class_type": "TenancyTestSleep", "inputs": {"seconds": self.seconds, "tag": self.tag}}}


@dataclass(frozen=True)
class Run:
    makespan: float
    per_instance: list[tuple[int, float]]  # (prompts, busy seconds) per instance
    submitted_s: float  # how long the burst's POST /prompt calls took
    greedy: float  # the makespan of the same start order on three workers with no cost between prompts
    gaps_ms: tuple[float, float, float]  # median, max, total time workers spent between one prompt and their next
    loads: int = 0  # model loads the workers made (mixed-model bursts)


def greedy_makespan(lengths: list[float], workers: int = INSTANCES) -> float:
    """Each prompt, in order, on the worker free first, all free at 0: what a pull queue reaches when handing out
    costs nothing, so makespan minus this is what admission, hand-out and execution cost between prompts."""
    free = [0.0] * workers
    for length in lengths:
        heapq.heappush(free, heapq.heappop(free) + length)
    return max(free)


def burst(prompts: int, tenants: int, scale: float, seed_value: int, models: int = 0,
          load_s: float = 0.0) -> list[Prompt]:
    rng = random.Random(seed_value)
    made = []
    for i in range(prompts):
        tenant = i % tenants
        mean = TENANT_MEANS_S[tenant % len(TENANT_MEANS_S)] * scale
        made.append(Prompt(tenant, round(mean * rng.uniform(0.5, 1.5), 2), f"t{tenant}-{i}"))
    rng.shuffle(made)
    if models:  # drawn after the shuffle: the plain burst stays the same for a seed
        made = [Prompt(p.tenant, p.seconds, p.tag, model_name(rng.randrange(models)), load_s) for p in made]
    return made


def model_name(index: int) -> str:
    return f"bench-model-{index}.safetensors"


def add_models(bases: list[Path], count: int) -> None:
    """`count` (empty) checkpoint files in every instance's models folder: what the model node's combo lists."""
    for base in bases:
        folder = base / "models" / "checkpoints"
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            (folder / model_name(index)).write_bytes(b"")


def add_tenants(config_path: Path, count: int) -> list[str]:
    """`count` tenants on the bench plan; their API keys."""
    settings = config_module.load(config_path)

    async def work() -> list[str]:
        store = open_store(settings.store, settings.path("."))
        keys = []
        try:
            for i in range(count):
                await accounts.add_tenant(store, f"bench-{i}", "bench", settings.plans)
                keys.append((await accounts.create_key(store, f"bench-{i}", "bench"))[0])
        finally:
            await store.close()
        return keys

    return asyncio.run(work())


def set_cluster(bases: list[Path], enabled: bool, lookahead: int = 1, affinity_s: float = 0.0) -> None:
    for base in bases:
        path = base / "user" / "tenancy" / config_module.CONFIG_FILE
        raw = yaml.safe_load(path.read_text())
        raw["cluster"] = {"enabled": enabled, "lookahead": lookahead, "affinity_s": affinity_s}
        path.write_text(yaml.safe_dump(raw, sort_keys=False))


def finished(admins: list[ComfyClient], ids: set[str]) -> list[list[dict]]:
    """Per instance, the history entries of the burst's prompts it ran, once every prompt has one."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        seen = [{pid: entry for pid, entry in admin.get("/history").json().items() if pid in ids}
                for admin in admins]
        if sum(len(s) for s in seen) >= len(ids):
            return [list(s.values()) for s in seen]
        time.sleep(0.5)
    raise SystemExit(f"the burst did not finish within {DRAIN_TIMEOUT_S} s")


def stamps(entry: dict) -> tuple[float, float]:
    """(start, end) of one prompt's execution, in seconds since the epoch, from ComfyUI's status messages."""
    status = entry.get("status") or {}
    if status.get("status_str") != "success":
        raise SystemExit(f"a prompt did not succeed: {status}")
    times = {event: data["timestamp"] / 1000 for event, data in status["messages"]}
    return times["execution_start"], times["execution_success"]


def post(senders: list[list[ComfyClient]], prompts: list[Prompt]) -> set[str]:
    """Deal the prompts to the instances in turn, as a balancer without stickiness does; their ids."""
    ids = set()
    for i, prompt in enumerate(prompts):
        answer = senders[i % len(senders)][prompt.tenant].queue(prompt.workflow())
        if answer.status_code != 200:
            raise SystemExit(f"/prompt refused: {answer.status_code} {answer.text[:300]}")
        ids.add(answer.json()["prompt_id"])
    return ids


def run_burst(workers: list[ComfyUI], keys: list[str], admin_key: str, prompts: list[Prompt]) -> Run:
    senders = [[ComfyClient(w.url, key) for key in keys] for w in workers]
    admins = [ComfyClient(w.url, admin_key) for w in workers]
    warm_up = [Prompt(t, 0.0, f"warm-{t}-{i}") for i in range(len(workers)) for t in range(len(keys))]
    finished(admins, post(senders, warm_up))  # every tenant on every instance: catalogues, caches, connections
    began = time.time()
    ids = post(senders, prompts)
    submitted = time.time() - began
    ran = finished(admins, ids)
    spans = [[stamps(entry) for entry in entries] for entries in ran]
    end = max(stop for instance in spans for _start, stop in instance)
    in_order = sorted(span for instance in spans for span in instance)
    gaps = [b[0] - a[1] for instance in map(sorted, spans) for a, b in itertools.pairwise(instance)]
    return Run(end - began, [(len(s), sum(stop - start for start, stop in s)) for s in spans], submitted,
               greedy_makespan([stop - start for start, stop in in_order]),
               (statistics.median(gaps) * 1000, max(gaps) * 1000, sum(gaps) * 1000))


def measure(bases: list[Path], mode: tuple[str, bool, int, float], keys: list[str], admin_key: str,
            prompts: list[Prompt]) -> Run:
    _name, cluster, lookahead, affinity_s = mode
    set_cluster(bases, cluster, lookahead, affinity_s)
    log = bases[0].parent / f"runs-{len(list(bases[0].parent.glob('runs-*')))}.log"  # a fresh one per run
    workers = []
    try:
        for base in bases:  # one at a time: a ComfyUI start is CPU-heavy; each process starts holding no model
            workers.append(ComfyUI(base, env={**ENV, "TENANCY_TEST_RUN_LOG": str(log)}).start())
        run = run_burst(workers, keys, admin_key, prompts)
    finally:
        for worker in workers:
            worker.stop()
    loads = sum(line.startswith("load:") for line in log.read_text().splitlines()) if log.exists() else 0
    return dataclasses.replace(run, loads=loads)


def report(prompts: list[Prompt], tenants: int, runs: dict[str, Run]) -> None:
    work = sum(p.seconds for p in prompts)
    models = {p.model for p in prompts if p.model}
    least_loads = max(len(models), INSTANCES) if models else 0
    load_s = max((p.load_s for p in prompts), default=0.0)
    ideal = (work + least_loads * load_s) / INSTANCES
    dealt = [sum(p.seconds for p in prompts[i::INSTANCES]) for i in range(INSTANCES)]
    print(f"{len(prompts)} prompts from {tenants} tenants, {min(p.seconds for p in prompts):.2f}-"
          f"{max(p.seconds for p in prompts):.2f} s each, total work {work:.1f} s on {INSTANCES} instances"
          + (f"; {len(models)} models, {load_s:g} s a load" if models else ""))
    print(f"{'':<40} {'makespan':>9} {'/ ideal':>8}   per instance: prompts, busy s   posting  gaps: median, max, "
          "sum")
    for name, run in runs.items():
        spread = "  ".join(f"{n:>2} {busy:5.1f}" for n, busy in run.per_instance)
        print(f"{name:<40} {run.makespan:8.2f}s {run.makespan / ideal:8.3f}   {spread}   {run.submitted_s:6.2f}s"
              f"  {run.gaps_ms[0]:4.0f} {run.gaps_ms[1]:5.0f} {run.gaps_ms[2]:6.0f} ms")
    if models:
        for name, run in runs.items():
            print(f"{name}: {run.loads} model loads ({run.loads * load_s:.1f} s of loading)")
        print(f"ideal: {least_loads} loads (each model once, at least one per instance)")
    print(f"{'ideal (total work / 3)' if not models else 'ideal ((work + loads) / 3)':<40} {ideal:8.2f}s {1:8.3f}")
    print(f"posting: how long the {len(prompts)} POST /prompt took (each prompt runs as soon as a worker takes it); "
          "gaps: from one prompt's end to the next's start on a worker")
    for name, run in runs.items():
        if name != LOCAL_RUN:
            print(f"{name}: its start order, each prompt on the first free of {INSTANCES} workers with nothing "
                  f"between prompts: {run.greedy:.2f} s ({run.greedy / ideal:.3f} x ideal): the rest is the cost "
                  "between prompts")
    print(f"round-robin's own bound: the busiest instance was dealt {max(dealt):.1f} s of work "
          f"({max(dealt) / ideal:.3f} x ideal)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=60)
    parser.add_argument("--tenants", type=int, default=6)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every prompt's length")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--lookahead", type=int, nargs="+", default=[3],
                        help="cluster.lookahead of the global queue's runs, one run each, in this order")
    parser.add_argument("--no-estimates", action="store_true", help="the queue does not know the prompts' lengths")
    parser.add_argument("--no-local", action="store_true", help="leave out the round-robin run")
    parser.add_argument("--models", type=int, default=0, help="a mixed-model burst on this many models (0: none)")
    parser.add_argument("--load-s", type=float, default=2.0, help="seconds a model load costs (with --models)")
    parser.add_argument("--affinity", type=float, nargs="+", default=None,
                        help="cluster.affinity_s of the global queue's runs (default: 0 10 with --models, else 0)")
    args = parser.parse_args()
    affinities = args.affinity or ([0.0, 10.0] if args.models else [0.0])
    prompts = burst(args.prompts, args.tenants, args.scale, args.seed, args.models, args.load_s)
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp) / "redis").start()
        try:
            bases = [Path(tmp) / f"instance-{i}" for i in range(INSTANCES)]
            seeded = seed(bases[0], {"store": server.url, "plans": {"bench": BENCH_PLAN},
                                     "estimates": {} if args.no_estimates else ESTIMATES})
            for base in bases[1:]:
                share_config(base, bases[0])
            keys = add_tenants(seeded.config_path, args.tenants)
            add_models(bases, args.models)
            modes = [(f"global queue, lookahead {n}" + (f" ({i + 1})" if args.lookahead.count(n) > 1 else "")
                      + (f", affinity {a:g} s" if len(affinities) > 1 or a else ""), True, n, a)
                     for i, n in enumerate(args.lookahead) for a in affinities]
            runs = {mode[0]: measure(bases, mode, keys, seeded.keys["admin"], prompts)
                    for mode in modes + ([] if args.no_local else [(LOCAL_RUN, False, 1, 0.0)])}
        finally:
            server.stop()
    report(prompts, args.tenants, runs)


if __name__ == "__main__":
    main()
