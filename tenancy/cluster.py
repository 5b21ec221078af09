"""The cluster queue's decisions, over data: a prompt's fair share of the cluster, which tenant an idle worker
serves next, what becomes of a prompt whose worker stopped answering, and what it is charged.

The Lua scripts `store/lua/cq_*.lua` apply these rules atomically in Redis and mirror them line for line (as
`store/lua/reserve.lua` mirrors `admission.quota_reason`); the tests hold the two alike."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .admission import virtual_finish

WORKER_LOST = "worker_lost"  # a prompt that had started when its worker's lease ran out: failed, never rerun
REDELIVERY_LIMIT = "redelivery_limit"  # one that never started, but was handed out too often already
REDELIVER = "redeliver"
QUEUED, RUNNING = "queued", "running"
TERMINAL = ("done", "error", "interrupted", "cancelled", "failed")  # a prompt's state never changes after these


def fair_units(cost: float, weight: float) -> int:
    """What a prompt adds to its tenant's virtual finish: the FairQueue rule, whole numbers (cq_enqueue.lua
    takes max(virtual now, the tenant's last finish) and adds this, atomically across instances)."""
    return virtual_finish(0, 0, cost, weight)


@dataclass(frozen=True)
class Head:
    """A tenant that may start a prompt now (queued work, under its cap), the number of its next prompt, and how
    many of its prompts run and wait."""

    tenant: str
    number: int
    running: int
    queued: int


def next_tenant(heads: Iterable[Head]) -> str | None:
    """The tenant whose turn it is: the lowest virtual finish; on a tie, the tenant running fewer prompts, then
    the one with fewer waiting, then by name, so every instance decides alike. A newcomer's first prompt ties with
    a backlogged tenant's next one when it arrives just after that tenant's prompts started: it goes first, also
    when the backlog's running prompts all ended before a worker asked (both then run none)."""
    best = min(heads, key=lambda h: (h.number, h.running, h.queued, h.tenant), default=None)
    return None if best is None else best.tenant


def in_turn(upcoming: Sequence[float], lookahead: int, warm: Sequence[bool] | None = None) -> int:
    """Which of a tenant's queued prompts starts in its turn (`upcoming`: their estimated seconds, in the order
    they queued): the longest of its first `lookahead`, the earliest of equals; with 1, its oldest. With model
    affinity (`warm`: per queued prompt, whether it loads nothing on the asking worker, `affinity.warm`), the
    longest of the warm ones among them when there is one.

    A burst's makespan suffers when a long prompt starts last and the other workers idle through its end; longer
    prompts first shortens that tail. Only the tenant's own order changes: whose turn it is stays `next_tenant`
    over the numbers of the tenants' oldest queued prompts, and a turn uses the tenant's lowest number whichever of
    its prompts fills it (`renumbered`), so the order of the tenants' turns is the one without lookahead. A prompt
    is passed only by longer prompts its own tenant queued after it (while such ones keep coming into the window it
    keeps waiting: a tenant trades its own short prompts' latency for its burst's end, which is why the default
    is 1).
    """
    window = upcoming[:max(lookahead, 1)]
    candidates = range(len(window))
    if warm is not None and any(warm[i] for i in candidates):
        candidates = [i for i in candidates if warm[i]]
    return max(candidates, key=lambda i: (window[i], -i), default=0)


def renumbered(numbers: Sequence[int], pick: int) -> list[int]:
    """The numbers of a tenant's first `pick` + 1 queued prompts (`numbers`: theirs, ascending) once its turn
    started the one at `pick`: that one takes the lowest, each passed-over one the number of the one after it, so
    the numbers the tenant has left queued are the ones it would have left had its oldest started."""
    return [*numbers[1:pick + 1], numbers[0]]


def eligible(queued: int, running: int, cap: int) -> bool:
    """Whether a tenant is offered to idle workers: it has queued prompts and runs fewer than its cap (0: none)."""
    return queued > 0 and (cap <= 0 or running < cap)


def reap_action(started: bool, attempts: int, max_redeliveries: int) -> str:
    """A prompt whose worker's lease ran out. One that had started is failed (it ran on a GPU and may be what
    killed the worker: an out-of-memory or poison prompt must not take down the next one too); one that never
    started goes back to the head of its tenant's queue, at most `max_redeliveries` times."""
    if started:
        return WORKER_LOST
    return REDELIVER if attempts <= max_redeliveries else REDELIVERY_LIMIT


def lost_charge(seconds: float, started: bool, policy: str) -> tuple[float, str]:
    """(seconds charged, ledger outcome) of a prompt failed by the reaper: the `reap` policy of
    `admission.reap_charge`; one that never started is refunded."""
    if not started:
        return 0.0, REDELIVERY_LIMIT
    return (seconds if policy == "charge_reservation" else 0.0), WORKER_LOST


LOST_MESSAGES = {
    WORKER_LOST: "the instance running this prompt stopped answering: the prompt failed and is not run again",
    REDELIVERY_LIMIT: "every instance that took this prompt stopped answering before it started: the prompt failed",
}


def lost_error(prompt_id: str, reason: str, at_ms: int) -> dict:
    """The `execution_error` that ends a prompt the reaper failed, for its client and in its history entry: shaped
    as ComfyUI's own for a failed prompt, naming no node (which one ran when the worker was lost is not known: an
    empty id and type, which clients that check the message's shape, ComfyUI's frontend among them, accept where
    they would refuse a null); the exception type carries the reason (`tenancy.worker_lost`, …)."""
    return {"prompt_id": prompt_id, "node_id": "", "node_type": "", "executed": [],
            "exception_message": LOST_MESSAGES.get(reason, reason), "exception_type": f"tenancy.{reason}",
            "traceback": [], "current_inputs": {}, "current_outputs": {}, "timestamp": at_ms}


def lost_entry(item: Sequence[Any], error: dict) -> dict:
    """The history entry of a prompt the reaper failed, as ComfyUI records a failed prompt: its queue item without
    the sensitive part, no outputs, status error with the error message."""
    return {"prompt": list(item[:5]), "outputs": {}, "meta": {},
            "status": {"status_str": "error", "completed": False, "messages": [["execution_error", error]]}}


def running_cap(max_running: int, max_concurrent: int) -> int:
    """How many of a tenant's prompts may run at once across the cluster: the plan's `max_running`, or, when 0,
    its `max_concurrent` (queued + running: never more can run)."""
    return max_running if max_running > 0 else max_concurrent


@dataclass(frozen=True)
class Carried:
    """What a prompt carries through the cluster queue besides its id and number: the ComfyUI queue item's prompt,
    extra data and outputs to execute, what the worker's accounting needs (plan, admission time), and its
    sensitive extra data (ComfyUI's API-node tokens) sealed for the worker that claims it (`sealed_extra`)."""

    prompt: dict
    extra_data: dict
    outputs: list
    plan: str | None = None
    admitted: float = 0.0
    sealed: str | None = None

    def dumps(self) -> str:
        return json.dumps([self.prompt, self.extra_data, self.outputs, self.plan, self.admitted, self.sealed],
                          separators=(",", ":"))

    @classmethod
    def loads(cls, text: str) -> Carried:
        prompt, extra_data, outputs, plan, admitted, *sealed = json.loads(text)  # 5 fields: queued before sealing
        return cls(prompt, extra_data, outputs, plan, admitted, sealed[0] if sealed else None)

    def queue_item(self, number: int, prompt_id: str, sensitive: dict | None = None) -> tuple:
        """The ComfyUI queue item a worker runs; `sensitive`: its opened extra data (only the claiming worker's)."""
        return (number, prompt_id, self.prompt, self.extra_data, self.outputs, dict(sensitive or {}))


def carried(item: Sequence[Any], plan: str | None, admitted: float, sealed: str | None = None) -> Carried:
    """A ComfyUI queue item as the stream carries it. Its sensitive extra data (item[5]) travels only as `sealed`
    (encrypted by the accepting instance), never in the clear: Redis holds no secrets."""
    return Carried(item[2], item[3], list(item[4]), plan, admitted, sealed)


ALIVE, SILENT, STOPPED = "alive", "silent", "stopped"  # an instance's liveness as the operator sees it
DRAINING, DRAINED = "draining", "drained"  # an instance an operator drains: claims nothing new


@dataclass(frozen=True)
class Held:
    """A prompt an instance holds: handed to it and not yet ended (its pending stream entry)."""

    prompt_id: str
    tenant: str
    started: bool  # began executing (a lost worker fails it instead of redelivering it)
    held_s: float  # since it was handed out
    silent_s: float  # since its lease was last renewed


@dataclass(frozen=True)
class InstanceStatus:
    name: str
    liveness: str  # alive (its heartbeat key lives) | silent (it holds prompts, no heartbeat within the lease) |
    # stopped (neither: listed only while drained)
    heartbeat_age_s: float | None  # since its last heartbeat (None: silent, its key expired)
    holds: tuple[Held, ...]
    drain: str = ""  # '' | draining (asked; it may still run or take a prompt) | drained (it saw it, holds nothing)


@dataclass(frozen=True)
class TenantStatus:
    tenant: str
    queued: int
    running: int
    cap: int  # 0: none
    oldest_wait_s: float | None  # how long its next prompt has waited (None: nothing queued)


@dataclass(frozen=True)
class ClusterStatus:
    queued: int
    instances: tuple[InstanceStatus, ...]
    tenants: tuple[TenantStatus, ...]


def drain_state(asked: str | None, seen: str | None, holding: int) -> str:
    """An instance's drain as the operator sees it: drained once the instance acknowledged this very request (`seen`
    is the request's mark `asked`: after that it claims nothing) and holds no prompt; draining until then."""
    if not asked:
        return ""
    return DRAINED if seen == asked and holding == 0 else DRAINING


def instance_statuses(beats: dict[str, int], held: dict[str, list[Held]], lease_ms: int,
                      drains: dict[str, tuple[str, str | None]] | None = None) -> tuple[InstanceStatus, ...]:
    """Every instance seen: those whose heartbeat key lives (`beats`: name -> ms it has left), those that hold
    prompts without one: silent past their lease, their prompts due to the reaper, and drained ones that stopped
    (`drains`: name -> (the drain request's mark, the mark the instance acknowledged)). An instance that holds
    nothing, stopped beating and is not drained is gone and not listed."""
    drains = drains or {}
    seen = []
    for name in sorted(set(beats) | set(held) | set(drains)):
        holds = tuple(sorted(held.get(name, ()), key=lambda h: h.prompt_id))
        drain = drain_state(*drains.get(name, (None, None)), len(holds))
        if name in beats:
            seen.append(InstanceStatus(name, ALIVE, max(lease_ms - beats[name], 0) / 1000, holds, drain))
        else:
            seen.append(InstanceStatus(name, SILENT if holds else STOPPED, None, holds, drain))
    return tuple(seen)
