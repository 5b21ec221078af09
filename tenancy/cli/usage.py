"""`usage`: the ledger of reserved and settled seconds, per tenant and day, for billing."""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

from ..usage import ledger_csv, parse_day
from .common import add_location_options, run_with_store


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("usage", help="export usage (the ledger) for billing", description=__doc__)
    add_location_options(parser)
    parser.add_argument("--tenant", help="only this tenant")
    parser.add_argument("--since", type=_date, help="from this day on (YYYY-MM-DD, UTC)")
    parser.add_argument("--csv", action="store_true", help="every ledger entry as CSV instead of a daily summary")
    parser.set_defaults(run=run)


def _date(text: str) -> float:
    try:
        return parse_day(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    async def work(settings, store):
        entries = await store.ledger(args.tenant, args.since)
        if args.csv:
            sys.stdout.write(ledger_csv(entries))
            return
        charged: dict[tuple[str, str], float] = defaultdict(float)
        prompts: dict[tuple[str, str], int] = defaultdict(int)
        for e in entries:
            if e.kind == "settle":
                charged[(e.tenant, e.day)] += e.seconds
                prompts[(e.tenant, e.day)] += 1
        print(f"{'tenant':<20} {'day':<10} {'prompts':>7} {'seconds':>10}")
        for (tenant, day), seconds in sorted(charged.items()):
            print(f"{tenant:<20} {day:<10} {prompts[(tenant, day)]:>7} {seconds:>10.1f}")

    return run_with_store(args, work)
