"""The cluster queue's start order on many seeded bursts, without ComfyUI: how far the makespan of
`bench_cluster.py`'s burst is from the ideal for each `cluster.lookahead`, averaged over seeds instead of the one
seed a real run measures.

Each burst is bench_cluster.py's (`burst`, same tenants and lengths), posted one prompt every `--post-ms` to a
queue that follows the pure rules the Lua scripts mirror (`tenancy.cluster`: `fair_units` at enqueue,
`next_tenant` over the tenants' lowest numbers, `in_turn` and `renumbered` in the tenant's turn), taken by three
workers that each ask again `--gap-ms` after their prompt ends (what a real run measures between prompts).

    .venv/bin/python scripts/model_cluster_order.py [--seeds 300] [--lookahead 1 2 3 4] [--gap-ms 40]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_cluster import INSTANCES, burst

from tenancy.cluster import Head, fair_units, in_turn, next_tenant, renumbered


def makespan(prompts, lookahead: int, gap_s: float, post_s: float, estimates: bool = True) -> float:
    """Seconds from the first post to the last prompt's end."""
    arrivals = [(i * post_s, p.tenant, p.seconds) for i, p in enumerate(prompts)]
    queued: dict[int, list[list]] = {}  # tenant -> [number, seconds] by number
    flast: dict[int, int] = {}
    running: dict[int, list[float]] = {}  # tenant -> end times of its running prompts
    free = [0.0] * INSTANCES
    vt, posted, started = 0, 0, 0
    while started < len(prompts):
        worker = min(range(INSTANCES), key=free.__getitem__)
        now = free[worker]
        while True:
            while posted < len(arrivals) and arrivals[posted][0] <= now:
                _at, tenant, seconds = arrivals[posted]
                number = max(vt, flast.get(tenant, 0)) + fair_units(seconds if estimates else 0.0, 1.0)
                flast[tenant] = number
                queued.setdefault(tenant, []).append([number, seconds])
                posted += 1
            if any(queued.values()):
                break
            now = arrivals[posted][0]
        heads = [Head(str(t), q[0][0], sum(end > now for end in running.get(t, ())), len(q))
                 for t, q in queued.items() if q]
        tenant = int(next_tenant(heads))
        mine = queued[tenant]
        pick = in_turn([seconds if estimates else 0.0 for _n, seconds in mine], lookahead)
        numbers = renumbered([n for n, _s in mine], pick)
        vt = max(vt, mine[0][0])
        seconds = mine[pick][1]
        queued[tenant] = [[n, s] for n, (_n, s) in zip(numbers[:-1], mine[:pick], strict=True)] + mine[pick + 1:]
        running.setdefault(tenant, []).append(now + seconds)
        free[worker] = now + seconds + gap_s
        started += 1
    return max(free) - gap_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=300)
    parser.add_argument("--lookahead", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--gap-ms", type=float, default=40.0)
    parser.add_argument("--post-ms", type=float, default=4.5)
    args = parser.parse_args()
    rows = {"no estimates": [], **{f"lookahead {n}": [] for n in args.lookahead}}
    for seed_value in range(args.seeds):
        prompts = burst(60, 6, 1.0, seed_value)
        ideal = sum(p.seconds for p in prompts) / INSTANCES
        gap, post = args.gap_ms / 1000, args.post_ms / 1000
        rows["no estimates"].append(makespan(prompts, 1, gap, post, estimates=False) / ideal)
        for n in args.lookahead:
            rows[f"lookahead {n}"].append(makespan(prompts, n, gap, post) / ideal)
    print(f"{args.seeds} bursts (seeds 0-{args.seeds - 1}), {args.gap_ms:.0f} ms between a worker's prompts; "
          "makespan / ideal:")
    print(f"{'':<16} {'mean':>6} {'max':>6} {'> 1.06':>7} {'seed 7':>7}")
    for name, ratios in rows.items():
        print(f"{name:<16} {statistics.mean(ratios):6.3f} {max(ratios):6.3f} {sum(r > 1.06 for r in ratios):7d}"
              f" {ratios[7] if len(ratios) > 7 else float('nan'):7.3f}")


if __name__ == "__main__":
    main()
