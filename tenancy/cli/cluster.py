"""`cluster status`: the cluster queue as Redis holds it: instances and their liveness, drain and what each runs,
per tenant the queue depth and the oldest wait. Reads only; works while ComfyUI is down, from any machine that
reaches Redis. `cluster drain <instance>`: that instance takes no new prompts (within a heartbeat), finishes what it
runs, and stays drained across restarts until `cluster undrain <instance>`."""

from __future__ import annotations

import argparse
import dataclasses
import json

from ..cluster import ClusterStatus
from ..store import StoreUnavailable
from ..store.cluster_queue import ClusterQueue
from .common import add_location_options, load_settings


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("cluster", help="the cluster queue shared by several instances",
                                 description=__doc__)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    status = actions.add_parser("status", help="instances, what each runs, per-tenant queue depth and wait",
                                description=__doc__)
    add_location_options(status)
    status.add_argument("--json", action="store_true", help="one JSON object instead of tables")
    status.set_defaults(run=run_status)
    for action, what in (("drain", "take no new prompts: finish what it runs, then it can be stopped at no cost"),
                         ("undrain", "take prompts again")):
        command = actions.add_parser(action, help=f"an instance {what}", description=__doc__)
        add_location_options(command)
        command.add_argument("instance", help="the instance's name (its `instance` setting; `cluster status` lists "
                             "them)")
        command.set_defaults(run=run_drain)


def _queue(args: argparse.Namespace):
    from . import CommandError

    settings = load_settings(args)
    if not settings.store.startswith(("redis://", "rediss://")):
        raise CommandError(f"the cluster queue lives in Redis, but this config's store is {settings.store!r}")
    queue = ClusterQueue(settings.store, "cli", lease_s=settings.cluster.lease_s,
                         max_redeliveries=settings.cluster.max_redeliveries, timeout_s=settings.store_timeout_s)
    return settings, queue


def run_drain(args: argparse.Namespace) -> int:
    from . import CommandError

    _settings, queue = _queue(args)
    try:
        if args.action == "drain":
            queue.drain(args.instance)
            print(f"{args.instance}: draining (it takes no new prompts from its next heartbeat; `cluster status` "
                  "says drained once it holds nothing)")
        else:
            was = queue.undrain(args.instance)
            print(f"{args.instance}: {'undrained' if was else 'was not drained'}")
    except StoreUnavailable as exc:
        raise CommandError(str(exc), code=1) from None
    finally:
        queue.close()
    return 0


def run_status(args: argparse.Namespace) -> int:
    from . import CommandError

    settings, queue = _queue(args)
    try:
        status = queue.status()
    except StoreUnavailable as exc:
        raise CommandError(str(exc), code=1) from None
    finally:
        queue.close()
    if args.json:
        print(json.dumps({"cluster_enabled": settings.cluster.enabled, **dataclasses.asdict(status)}, indent=2))
    else:
        print(render(status, settings.cluster.enabled))
    return 0


def render(status: ClusterStatus, enabled: bool) -> str:
    lines = [] if enabled else ["note: cluster.enabled is false in this config (showing what Redis holds)"]
    lines.append(f"instances ({len(status.instances)}), {status.queued} prompts queued in the cluster")
    lines.append(f"  {'instance':<24} {'liveness':<8} {'last beat':>9} {'drain':<8}  holds")
    for inst in status.instances:
        beat = "-" if inst.heartbeat_age_s is None else f"{inst.heartbeat_age_s:.1f}s"
        runs = ", ".join(f"{h.prompt_id} ({h.tenant}, {'running' if h.started else 'handed out'} {h.held_s:.1f}s, "
                         f"lease renewed {h.silent_s:.1f}s ago)" for h in inst.holds) or "idle"
        lines.append(f"  {inst.name:<24} {inst.liveness:<8} {beat:>9} {inst.drain or '-':<8}  {runs}")
    lines.append(f"tenants ({len(status.tenants)})")
    lines.append(f"  {'tenant':<24} {'queued':>6} {'running':>7} {'cap':>4} {'oldest wait':>11}")
    for t in status.tenants:
        wait = "-" if t.oldest_wait_s is None else f"{t.oldest_wait_s:.1f}s"
        lines.append(f"  {t.tenant:<24} {t.queued:>6} {t.running:>7} {t.cap or '-':>4} {wait:>11}")
    return "\n".join(lines)
