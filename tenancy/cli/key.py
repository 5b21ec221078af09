"""`key create | list | revoke` and `token`: credentials for API clients and scripts."""

from __future__ import annotations

import argparse
import sys
import time

from .. import accounts, identity
from .common import add_location_options, parse_duration, run_with_store


def register(commands: argparse._SubParsersAction) -> None:
    key = commands.add_parser("key", help="create, list, revoke API keys", description=__doc__)
    actions = key.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a key for a tenant (printed once)")
    create.add_argument("tenant")
    create.add_argument("--name", default="api", help="what the key is for")
    create.add_argument("--expires", type=parse_duration, help="lifetime, e.g. 30d or 12h")
    listing = actions.add_parser("list", help="list keys (never the secrets)")
    listing.add_argument("--tenant")
    revoke = actions.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key_id")
    token = commands.add_parser("token", help="mint an access JWT for a tenant (for scripts)", description=__doc__)
    token.add_argument("tenant")
    token.add_argument("--ttl", type=parse_duration, help="lifetime (default from the config, at most 2h)")
    for sub in (create, listing, revoke, token):
        add_location_options(sub)
        sub.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    async def work(settings, store):
        if args.command == "token":
            if await store.get_tenant(args.tenant) is None:
                raise accounts.AdminError(f"no tenant {args.tenant}")
            ttl = int(args.ttl) if args.ttl else None
            token, _ = identity.mint_access(identity.token_settings(settings), f"cli:{args.tenant}", args.tenant,
                                            "member", ttl)
            print(token)
        elif args.action == "create":
            key, record = await accounts.create_key(store, args.tenant, args.name, args.expires)
            print(key)
            print(f"key id {record.key_id}: shown once, stored hashed", file=sys.stderr)
        elif args.action == "list":
            for record in await store.list_keys(args.tenant):
                print(f"{record.key_id}\t{record.tenant or '(operator)'}\t{record.name}\t{record.state(time.time())}")
        elif not await store.revoke_key(args.key_id):
            raise accounts.AdminError(f"no key {args.key_id}")
        else:
            print(f"key {args.key_id} revoked")

    return run_with_store(args, work)
