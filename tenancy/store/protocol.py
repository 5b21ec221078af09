"""What every store backend provides. The guard only ever talks to this protocol."""

from __future__ import annotations

from typing import Protocol

from ..records import (
    Account,
    ApiKey,
    LedgerEntry,
    QuotaDecision,
    RateLimit,
    RefreshToken,
    Reservation,
    ReserveRequest,
    Tenant,
    Usage,
)

# What no longer decides anything is forgotten this long after (both backends): a settled or refused reservation
# (a retried reserve of that prompt id is then decided anew), a prompt's owner, a used refresh token past expiry.
KEPT_S = 7 * 86400
ABANDONED = "abandoned"  # the outcome (and refusal reason) of a prompt whose admission failed part-way


class StoreUnavailable(RuntimeError):
    """The backend cannot be reached; the guard answers 503 store_unavailable (or lets work through
    uncharged when on_store_error is allow)."""


class Conflict(ValueError):
    """The record exists already."""


class Store(Protocol):
    description: str

    def identity_version(self) -> object | None:
        """A value that changes whenever tenants, accounts, API keys or revoked tokens change, by any process;
        None when the backend cannot tell more cheaply than by looking the credential up (nothing is cached).
        Asked on every request, so it is local and synchronous: never a network round trip."""

    async def ping(self) -> None:
        """Raise StoreUnavailable when the backend does not answer."""

    async def close(self) -> None: ...

    async def prune(self, now: float | None = None) -> None:
        """Drop what has expired (rate-limit state, revoked tokens, week-old settled records); Redis
        expires its keys by itself."""

    # tenants and accounts
    async def put_tenant(self, tenant: Tenant, *, create: bool) -> None: ...
    async def get_tenant(self, tenant_id: str) -> Tenant | None: ...
    async def list_tenants(self) -> list[Tenant]: ...
    async def put_account(self, account: Account, *, create: bool) -> None: ...
    async def get_account(self, username: str) -> Account | None: ...
    async def list_accounts(self, tenant: str | None = None) -> list[Account]: ...

    # API keys
    async def put_key(self, key: ApiKey) -> None: ...
    async def get_key(self, key_id: str) -> ApiKey | None: ...
    async def list_keys(self, tenant: str | None = None) -> list[ApiKey]: ...
    async def revoke_key(self, key_id: str) -> bool: ...

    # refresh tokens (rotating, reuse revokes the family) and revoked access tokens
    async def put_refresh(self, token: RefreshToken) -> None: ...
    async def use_refresh(self, token_hash: str, now: float) -> tuple[str, RefreshToken | None]:
        """Mark a refresh token used. Returns ("ok", token), ("reused", token) after revoking its family,
        or ("invalid", None) for unknown, expired or revoked ones."""

    async def revoke_family(self, family: str) -> None: ...
    async def revoke_jti(self, jti: str, expires: float) -> None: ...
    async def jti_revoked(self, jti: str) -> bool: ...

    # prompt ownership and the output index
    async def own_prompt(self, prompt_id: str, tenant: str | None, now: float) -> None: ...
    async def claim_prompt(self, prompt_id: str, tenant: str | None, now: float) -> bool:
        """Own the prompt id unless anyone owns it already (then False: nothing changes)."""

    async def prompt_owner(self, prompt_id: str) -> str | None:
        """The tenant that queued the prompt, "" for an admin's, None when unknown."""

    async def index_output(self, folder: str, subfolder: str, filename: str, tenant: str | None,
                           prompt_id: str) -> None: ...
    async def output_owner(self, folder: str, subfolder: str, filename: str) -> str | None: ...
    async def forget_outputs(self, files: list[tuple[str, str, str]]) -> None:
        """Drop the output index's entries of these (folder, subfolder, filename): the files were deleted."""

    # duties one instance does per period (the outputs' bucket sweep)
    async def claim_duty(self, name: str, hold_s: float) -> bool:
        """True for the one caller that takes `name` while nobody holds it; it is then held for `hold_s` seconds
        (not released early: the duty is done once per period)."""

    # admission: quotas (reserve, then settle exactly once), the ledger, rate limits
    async def reserve(self, request: ReserveRequest) -> QuotaDecision:
        """Atomic and idempotent on prompt_id: refuses when the tenant has max_active prompts held, or when
        used + held + seconds would exceed a non-negative limit; otherwise holds the seconds."""

    async def admit(self, request: ReserveRequest, rate: RateLimit | None = None) -> QuotaDecision:
        """What admitting a tenant's prompt takes, as few round trips (SQLite: one transaction) as the backend
        allows: the rate limit (refused: reason rate_limited with retry_after, nothing else recorded), then the
        prompt id's claim and the reservation, atomically: an id that anyone admitted before (claimed, or held)
        is refused as prompt_id_taken; otherwise `reserve`'s decision, except that only the same attempt's
        earlier decision replays and a refusal records nothing (the client may retry the id); an admission
        claims the id for its tenant (the prompt's owner) with the hold."""

    async def settle(self, tenant: str, prompt_id: str, actual: float, outcome: str,
                     now: float | None = None) -> Reservation | None:
        """Release the hold and charge `actual` seconds to the reservation's day, exactly once.
        Returns the settled reservation, or None when there is no hold (unknown or already settled)."""

    async def abandon(self, tenant: str, prompt_id: str, now: float | None = None, *, attempt: str = "",
                      outcome: str = ABANDONED) -> Reservation | None:
        """The prompt will never be queued (its admission failed part-way, the store unreachable, or ComfyUI
        refused it): refund the hold of this admission `attempt` if it holds one (as `settle` with 0 s) and
        release its claim on the prompt id; when this attempt reserved nothing, store a refusal for it, so that
        its reserve still on its way to the store replays that instead of holding seconds for ever. Another
        attempt's hold is left as it is."""

    async def mark_started(self, tenant: str, prompt_id: str, now: float) -> None:
        """Note that a held reservation's prompt began executing (the first time only); nothing when not held."""

    async def holds(self, tenant: str | None = None) -> list[Reservation]: ...
    async def expired_holds(self, now: float | None = None) -> list[Reservation]: ...
    async def instance_holds(self, instance: str) -> list[Reservation]: ...
    async def usage(self, tenant: str, day: str) -> Usage: ...
    async def ledger(self, tenant: str | None = None, since: float | None = None) -> list[LedgerEntry]: ...

    async def rate_limit(self, key: str, interval_s: float, burst: int, now: float | None = None) -> float:
        """GCRA: one request per `interval_s` with bursts of `burst`. Returns 0 when allowed, else the exact
        number of seconds until the next request would be. `now` defaults to the store's own clock
        (Redis: TIME, so every instance shares one clock); tests pass it explicitly."""
