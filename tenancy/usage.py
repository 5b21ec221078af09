"""Usage as the operators and tenants read it: a day's row of seconds, the ledger as CSV, a day named in a query.

Shared by the admin API, `/tenancy/me` and the `usage` command, so that each shows the same numbers the same way.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable

from .records import LedgerEntry, Usage, remaining_seconds

LEDGER_COLUMNS = ("time_utc", "tenant", "prompt_id", "kind", "seconds", "day", "outcome")


def usage_row(day: str, usage: Usage, daily_seconds: float | None) -> dict:
    """One day's seconds of a tenant; `daily_seconds` None when its plan is not configured (nothing is known of
    what is left), negative for an unlimited plan (then `remaining_seconds` is -1)."""
    remaining = None if daily_seconds is None else remaining_seconds(daily_seconds, usage.used, usage.held)
    return {"day": day, "used_seconds": usage.used, "held_seconds": usage.held, "daily_seconds": daily_seconds,
            "remaining_seconds": remaining}


def ledger_csv(entries: Iterable[LedgerEntry]) -> str:
    """Every entry as a CSV line (times in UTC, seconds to the millisecond), for billing."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(LEDGER_COLUMNS)
    for e in entries:
        stamp = dt.datetime.fromtimestamp(e.time, dt.timezone.utc).isoformat(timespec="seconds")
        writer.writerow([stamp, e.tenant, e.prompt_id, e.kind, f"{e.seconds:.3f}", e.day, e.outcome])
    return out.getvalue()


def parse_day(text: str) -> float:
    """`YYYY-MM-DD` -> the epoch second that UTC day starts; ValueError in words otherwise."""
    try:
        return dt.datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=dt.timezone.utc).timestamp()
    except ValueError:
        raise ValueError(f"{text!r}: use YYYY-MM-DD") from None
