"""The history every instance shares (the cluster queue, `cluster.enabled`): what one record holds, whose history
it goes to, and how long a tenant's records are kept (its plan's `history_items` and `history_days`).

Pure: the store (`store/cluster_history.py`) keeps the records in the owner's slot and trims them with these
rules; the adapter records each prompt a worker finished, and reads them back for any instance's `/history`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config import Plan
from .read_back import GUARD_EXTRA_DATA
from .workflow import ADMIN_NAMESPACE

DAY_MS = 86_400_000


@dataclass(frozen=True)
class Recorded:
    """One finished prompt as its history keeps it: ComfyUI's history entry (prompt, outputs, status, meta) and
    the guard's outcome for it (timeout, cancelled), if it decided one."""

    entry: dict
    outcome: str | None = None


@dataclass(frozen=True)
class Retention:
    items: int  # the newest kept
    keep_ms: int  # how long one is kept after it finished; 0: until `items` pushes it out


def retention(plan: Plan | None) -> Retention:
    """A plan's retention; operators' prompts (no plan) keep the defaults: ComfyUI's own cap, no age limit."""
    plan = plan or Plan()
    return Retention(plan.history_items, int(plan.history_days * DAY_MS))


def namespace(owner: str | None) -> str:
    """Whose history a prompt goes to: its tenant, or the operators' (None)."""
    return owner or ADMIN_NAMESPACE


def plan_in(extra_data: Any) -> str | None:
    """The plan a prompt was admitted under, from the key the guard put in its extra_data."""
    tenancy = extra_data.get(GUARD_EXTRA_DATA) if isinstance(extra_data, Mapping) else None
    plan = tenancy.get("plan") if isinstance(tenancy, Mapping) else None
    return plan if isinstance(plan, str) else None


def encode(recorded: Recorded) -> str:
    """The record as the store keeps it (JSON; a queue item's tuple reads back as a list, as ComfyUI's answer
    shows it). Raises TypeError or ValueError for an entry that is not JSON (a node's odd output)."""
    return json.dumps([recorded.entry, recorded.outcome], separators=(",", ":"), allow_nan=False)


def decode(text: str) -> Recorded:
    entry, outcome = json.loads(text)
    return Recorded(entry, outcome)
