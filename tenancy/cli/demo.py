"""`demo`: two demo tenants (basic and premium) with a member each and fresh API keys, printed for trying out.

Idempotent: re-running keeps the tenants, resets the members' passwords and replaces the demo keys.
"""

from __future__ import annotations

import argparse

from .. import accounts, bootstrap
from .common import add_location_options, config_path_of, home_of, run_with_store

DEMO = (("demo-basic", "basic", "alice"), ("demo-premium", "premium", "bruno"))
DEMO_KEY_NAME = "demo"


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("demo", help="create two demo tenants and print their keys", description=__doc__)
    add_location_options(parser)
    parser.add_argument("--url", default="http://127.0.0.1:8188", help="where the server will listen")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    home = home_of(args)
    config_path = config_path_of(args, home)
    bootstrap.initialise(config_path.parent, config_path, models_dir=home.models_dir)

    async def work(settings, store):
        lines = []
        for tenant_id, plan, username in DEMO:
            if await store.get_tenant(tenant_id) is None:
                await accounts.add_tenant(store, tenant_id, plan, settings.plans)
            password = accounts.new_password()
            if await store.get_account(username) is None:
                await accounts.add_account(store, username, password, tenant_id, "member")
            else:
                await accounts.set_password(store, username, password)
            for old in await store.list_keys(tenant_id):
                if old.name == DEMO_KEY_NAME and not old.revoked:
                    await store.revoke_key(old.key_id)
            key, _ = await accounts.create_key(store, tenant_id, DEMO_KEY_NAME)
            lines.append(f"  {tenant_id:<13} plan {plan:<8} login {username} / {password}   API key {key}")
        print("Demo tenants (keys and passwords are new on every run):")
        print("\n".join(lines))
        print(f"Log in at {args.url}/tenancy/login, or call the API with `Authorization: Bearer <API key>`.")

    return run_with_store(args, work)
