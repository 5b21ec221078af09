"""`user add` and `admin add`: people who log in (tenant members and operators)."""

from __future__ import annotations

import argparse
import getpass
import sys

from .. import accounts
from ..records import TENANT_ROLES
from .common import add_location_options, run_with_store


def register(commands: argparse._SubParsersAction) -> None:
    user = commands.add_parser("user", help="add tenant members", description=__doc__)
    actions = user.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="add a member to a tenant (password from stdin or a prompt)")
    add.add_argument("tenant")
    add.add_argument("username")
    add.add_argument("--role", choices=TENANT_ROLES, default="member")
    admin = commands.add_parser("admin", help="add operators", description=__doc__)
    admin_actions = admin.add_subparsers(dest="action", required=True, metavar="ACTION")
    admin_add = admin_actions.add_parser("add", help="add a global operator (password from stdin or a prompt)")
    admin_add.add_argument("username")
    for sub in (add, admin_add):
        add_location_options(sub)
        sub.set_defaults(run=run)


def read_password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise ValueError("the passwords differ")
    return first


def run(args: argparse.Namespace) -> int:
    tenant = getattr(args, "tenant", None)
    role = getattr(args, "role", "admin")
    password = read_password()

    async def work(settings, store):
        account = await accounts.add_account(store, args.username, password, tenant, role)
        print(f"{account.role} {account.username} added" + (f" to {tenant}" if tenant else ""))

    return run_with_store(args, work)
