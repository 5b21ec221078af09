"""Retention of tenants' outputs per plan (`output_days`): which files are past it, whose they are, and what a
download of one answers. Pure decisions over listings of (name, modified time); the sweep that lists and deletes
them, on this instance's disk and in the bucket, is `tenancy.comfy.execution.output_retention`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .outputs import normalised_prefix
from .paths import TENANTS_DIR

DAY_S = 86400.0
OUTPUT = "output"  # the one folder swept: inputs (uploads) and temp (previews) are never touched
BUCKET_DUTY = "outputs-retention"  # the store's lock: one instance sweeps the bucket per period
FIRST_SWEEP_S = 60.0  # the first sweep after start, so that it never competes with the start itself


@dataclass(frozen=True)
class Swept:
    """What one sweep deleted of one tenant's outputs."""

    tenant: str
    days: float
    disk: int  # files deleted from this instance's output folder
    bucket: int  # objects deleted from the bucket (0 when another instance sweeps it this period)


def cutoff(now: float, days: float) -> float | None:
    """Files modified before this are past the retention; None when the plan keeps them for ever."""
    return now - days * DAY_S if days > 0 else None


def past(modified: float, now: float, days: float) -> bool:
    """Whether a file modified at `modified` is past a retention of `days` at `now`."""
    limit = cutoff(now, days)
    return limit is not None and modified < limit


def expired(listing: Iterable[tuple[str, float]], now: float, days: float) -> list[str]:
    """The names (file paths, object keys) in a listing of (name, modified time) that are past the retention, in
    the listing's order; none when `days` is 0 (kept for ever)."""
    limit = cutoff(now, days)
    if limit is None:
        return []
    return [name for name, modified in listing if modified < limit]


def days_of(plans: Mapping[str, Any], plan: str | None) -> float:
    """A plan's output_days; 0 (kept) for operators (no plan) and for a plan the config no longer names."""
    chosen = plans.get(plan) if plan is not None else None
    return float(getattr(chosen, "output_days", 0.0) or 0.0)


def any_retention(plans: Mapping[str, Any]) -> bool:
    """Whether any plan deletes outputs: without one, downloads never look at ages and the sweep does nothing."""
    return any(days_of(plans, name) > 0 for name in plans)


def retained_tenants(tenants: Iterable[Any], plans: Mapping[str, Any]) -> dict[str, float]:
    """tenant id -> output_days, for the tenants whose plan deletes outputs (disabled tenants too: their files
    age the same); the sweep lists only their folders and prefixes."""
    found = {}
    for tenant in tenants:
        days = days_of(plans, tenant.plan)
        if days > 0:
            found[tenant.id] = days
    return found


def tenant_output_prefix(prefix: str, tenant: str) -> str:
    """`<prefix>tenants/<tenant>/output/`: every object key of the tenant's outputs starts with it."""
    return f"{normalised_prefix(prefix)}{TENANTS_DIR}/{tenant}/{OUTPUT}/"


def location_of_key(prefix: str, tenant: str, key: str) -> tuple[str, str, str] | None:
    """(folder, real subfolder, file name) on disk of an output's object key (the inverse of
    `outputs.object_key`), None for a key outside the tenant's output prefix."""
    head = tenant_output_prefix(prefix, tenant)
    if not key.startswith(head) or key.endswith("/"):
        return None
    virtual, _, filename = key[len(head):].rpartition("/")
    subfolder = f"{TENANTS_DIR}/{tenant}" + (f"/{virtual}" if virtual else "")
    return OUTPUT, subfolder, filename


def finished_at(entry: Any) -> float | None:
    """When a history entry's prompt finished (its latest status message, seconds since the epoch), None when the
    entry carries no times."""
    status = entry.get("status") if isinstance(entry, dict) else None
    messages = status.get("messages") if isinstance(status, dict) else None
    times = [data["timestamp"] for message in messages or () if isinstance(message, (list, tuple))
             and len(message) == 2 and isinstance(data := message[1], dict)
             and isinstance(data.get("timestamp"), (int, float)) and not isinstance(data.get("timestamp"), bool)]
    return max(times) / 1000.0 if times else None


def files_listed(entry: Any, now: float, days: float) -> bool:
    """Whether a finished prompt's files may still be listed as download links: not once the prompt finished
    before the retention's cutoff (each file was written before that, so it is deleted or about to be)."""
    finished = finished_at(entry)
    return finished is None or not past(finished, now, days)


def bucket_claim_s(sweep_s: float) -> float:
    """How long the instance that sweeps the bucket holds the store's lock: most of a period, so that the next
    period's first instance (this one too, its timer a little late) takes it again."""
    return sweep_s * 0.9
