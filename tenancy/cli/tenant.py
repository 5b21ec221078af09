"""`tenant add | list | disable | enable`: the tenants of this installation."""

from __future__ import annotations

import argparse

from .. import accounts
from .common import add_location_options, run_with_store


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("tenant", help="add, list, disable tenants", description=__doc__)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="create a tenant")
    add.add_argument("tenant")
    add.add_argument("--plan", required=True, help="a plan from the config (e.g. basic, trial, premium)")
    add.add_argument("--tag", action="append", default=[], help="a tag (e.g. canary); repeatable")
    listing = actions.add_parser("list", help="list tenants")
    disable = actions.add_parser("disable", help="stop a tenant (its keys and sessions stop working)")
    disable.add_argument("tenant")
    enable = actions.add_parser("enable", help="re-enable a tenant")
    enable.add_argument("tenant")
    for sub in (add, listing, disable, enable):
        add_location_options(sub)
        sub.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    async def work(settings, store):
        if args.action == "add":
            tenant = await accounts.add_tenant(store, args.tenant, args.plan, settings.plans, tuple(args.tag))
            print(f"tenant {tenant.id} ({tenant.plan}) created")
        elif args.action == "list":
            for tenant in await store.list_tenants():
                print(f"{tenant.id}\t{tenant.plan}\t{tenant.status}\t{','.join(tenant.tags)}")
        else:
            status = "disabled" if args.action == "disable" else "active"
            await accounts.update_tenant(store, args.tenant, settings.plans, status=status)
            print(f"tenant {args.tenant} {status}")

    return run_with_store(args, work)
