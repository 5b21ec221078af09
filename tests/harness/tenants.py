"""Seeds a test installation: two tenants on different plans, a member each, API keys, an operator key."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import yaml

from tenancy import accounts, bootstrap
from tenancy import config as config_module
from tenancy.store import open_store

PASSWORD = "correct horse battery"


@dataclass(frozen=True)
class Seeded:
    config_path: Path
    keys: dict  # "a", "b", "admin" -> API key
    users: dict  # "a", "b" -> username


# One test client makes many requests from 127.0.0.1; per-IP limits get their own tests.
TEST_SETTINGS = {"ip_requests_per_minute": 1_000_000}
# Plans the admission tests need, next to the shipped ones (basic for tenant a, premium for tenant b, whose
# request rates are raised so that many tests in a row do not trip them; `throttled` tests the rate limit).
UNTHROTTLED = {"prompts_per_minute": 100000, "uploads_per_minute": 100000}
TEST_PLANS = {
    "basic": UNTHROTTLED,
    "premium": UNTHROTTLED,
    "throttled": {"prompts_per_minute": 6, "max_concurrent": 50},
    "quota30": {"daily_seconds": 30, "max_concurrent": 50, "prompts_per_minute": 100000},
    "timeboxed": {"max_execution_s": 5, "max_concurrent": 4},
    "capped": {"max_concurrent": 2, "daily_seconds": 30, "prompts_per_minute": 100000},
    "light": {"weight": 1, "max_concurrent": 50, "daily_seconds": -1, "prompts_per_minute": 100000},
    "heavy": {"weight": 4, "max_concurrent": 50, "daily_seconds": -1, "prompts_per_minute": 100000},
}
TENANTS = (("a", "tenant-a", "basic"), ("b", "tenant-b", "premium"), ("timeboxed", "tenant-t", "timeboxed"),
           ("capped", "tenant-c", "capped"), ("light", "tenant-light", "light"), ("heavy", "tenant-heavy", "heavy"),
           ("throttled", "tenant-r", "throttled"), ("quota30", "tenant-q", "quota30"))


def seed(base: Path, settings_overrides: dict | None = None) -> Seeded:
    folder = base / "user" / "tenancy"
    config_path = folder / config_module.CONFIG_FILE
    bootstrap.initialise(folder, config_path, models_dir=base / "models")
    raw = yaml.safe_load(config_path.read_text())
    raw.update(TEST_SETTINGS, **(settings_overrides or {}))
    raw["plans"] = {name: {**raw["plans"].get(name, {}), **TEST_PLANS.get(name, {})}
                    for name in {**raw["plans"], **TEST_PLANS}}
    config_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    settings = config_module.load(config_path)

    async def work():
        store = open_store(settings.store, settings.path("."))
        keys, users = {}, {}
        for short, tenant, plan in TENANTS:
            await accounts.add_tenant(store, tenant, plan, settings.plans)
            keys[short], _ = await accounts.create_key(store, tenant, "tests")
            users[short] = f"user-{short}"
            await accounts.add_account(store, users[short], PASSWORD, tenant, "member")
        keys["admin"], _ = await accounts.create_key(store, None, "tests")
        await accounts.add_account(store, "operator", PASSWORD, None, "admin")
        await store.close()
        return keys, users

    keys, users = asyncio.run(work())
    return Seeded(config_path, keys, users)


def share_config(base: Path, like: Path) -> None:
    """Another instance of the same service: `base` gets `like`'s config and secrets (tokens verify on both)."""
    folder = base / "user" / "tenancy"
    folder.mkdir(parents=True)
    for name in ("config.yaml", "jwt.secret", "master.secret"):
        source = like / "user" / "tenancy" / name
        (folder / name).write_bytes(source.read_bytes())
        (folder / name).chmod(0o600)
    (base / "custom_nodes").mkdir(exist_ok=True)
