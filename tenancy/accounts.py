"""Tenant and account administration: the operations the CLI and the admin API share."""

from __future__ import annotations

import dataclasses
import secrets
import time

from . import identity
from .records import TENANT_ROLES, Account, ApiKey, Tenant, check_tenant_id, check_username
from .refusal import Refusal
from .store import Store

OPERATOR_KEY_NAME = "first-start operator key"


class AdminError(ValueError):
    """An administration request that cannot be done, in words."""

    def to_refusal(self) -> Refusal:
        return Refusal(400, "invalid_request", str(self))


async def add_tenant(store: Store, tenant_id: str, plan: str, plans: dict, tags: tuple[str, ...] = ()) -> Tenant:
    check_tenant_id(tenant_id)
    if plan not in plans:
        raise AdminError(f"unknown plan {plan!r}: configured plans are {', '.join(sorted(plans))}")
    if await store.get_tenant(tenant_id):
        raise AdminError(f"tenant {tenant_id} exists")
    tenant = Tenant(id=tenant_id, plan=plan, tags=tuple(tags))
    await store.put_tenant(tenant, create=True)
    return tenant


async def update_tenant(store: Store, tenant_id: str, plans: dict, **changes) -> Tenant:
    tenant = await store.get_tenant(tenant_id)
    if tenant is None:
        raise AdminError(f"no tenant {tenant_id}")
    if "plan" in changes and changes["plan"] not in plans:
        raise AdminError(f"unknown plan {changes['plan']!r}")
    tenant = dataclasses.replace(tenant, **changes)
    await store.put_tenant(tenant, create=False)
    return tenant


async def add_account(store: Store, username: str, password: str, tenant_id: str | None, role: str) -> Account:
    check_username(username)
    if tenant_id is not None and await store.get_tenant(tenant_id) is None:
        raise AdminError(f"no tenant {tenant_id}")
    if role not in (TENANT_ROLES if tenant_id else ("admin",)):
        raise AdminError(f"role {role!r} does not fit {'a tenant member' if tenant_id else 'an operator'}")
    if await store.get_account(username):
        raise AdminError(f"username {username} is taken")
    account = Account(username=username, tenant=tenant_id, role=role, password_hash=identity.hash_password(password))
    await store.put_account(account, create=True)
    return account


async def set_password(store: Store, username: str, password: str) -> Account:
    account = await store.get_account(username)
    if account is None:
        raise AdminError(f"no account {username}")
    account = dataclasses.replace(account, password_hash=identity.hash_password(password))
    await store.put_account(account, create=False)
    return account


async def create_key(store: Store, tenant_id: str | None, name: str, expires_in_s: float | None = None,
                     role: str | None = None) -> tuple[str, ApiKey]:
    if tenant_id is not None and await store.get_tenant(tenant_id) is None:
        raise AdminError(f"no tenant {tenant_id}")
    expires = time.time() + expires_in_s if expires_in_s else None
    key, record = identity.key_record(tenant_id, role or ("member" if tenant_id else "admin"), name, expires)
    await store.put_key(record)
    return key, record


async def operator_key_if_none(store: Store) -> str | None:
    """First start: when no operator can log in, create a key for one and return it (shown once)."""
    if any(a.role == "admin" for a in await store.list_accounts()):
        return None
    if any(k.tenant is None and not k.revoked for k in await store.list_keys()):
        return None
    key, _ = await create_key(store, None, OPERATOR_KEY_NAME)
    return key


def new_password() -> str:
    return secrets.token_urlsafe(12)
