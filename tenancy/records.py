"""The guard's plain data: tenants, accounts, API keys, refresh tokens, and the principal of a request."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")
TENANT_ROLES = ("member", "tenant_admin")  # what a tenant's people may be (and an identity provider may say)


@dataclass(frozen=True)
class Tenant:
    id: str
    plan: str
    status: str = "active"  # active | disabled
    tags: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return self.status == "active"


@dataclass(frozen=True)
class Account:
    """A person who logs in: a tenant member, a tenant admin, or a global admin (tenant None)."""

    username: str
    tenant: str | None
    role: str
    password_hash: str
    disabled: bool = False


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    tenant: str | None  # None: a global admin key
    role: str
    name: str
    secret_hash: str
    created: float
    expires: float | None = None
    revoked: bool = False

    def state(self, now: float) -> str:
        """active | revoked | expired: what the admin API and `key list` show (revoked wins over expired)."""
        if self.revoked:
            return "revoked"
        if self.expires is not None and self.expires < now:
            return "expired"
        return "active"


@dataclass(frozen=True)
class RefreshToken:
    token_hash: str
    family: str
    subject: str
    tenant: str | None
    role: str
    expires: float
    used: bool = False


@dataclass(frozen=True)
class Principal:
    """Who is calling. `tenant` is None for global admins and anonymous callers."""

    kind: str  # anonymous | tenant | admin
    subject: str = ""  # account:<username> | key:<key_id>
    tenant: str | None = None
    role: str = ""
    plan: str | None = None
    tags: tuple[str, ...] = ()
    credential: str = ""  # key id or jti, for the audit log
    via: str = ""  # api_key | jwt | cookie
    expires: float | None = None
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def is_admin(self) -> bool:
        return self.kind == "admin"

    @property
    def authenticated(self) -> bool:
        return self.kind != "anonymous"


ANONYMOUS = Principal(kind="anonymous")


def check_tenant_id(tenant_id: str) -> str:
    if not TENANT_ID.match(tenant_id or ""):
        raise ValueError(f"tenant id {tenant_id!r}: use 1-63 of a-z 0-9 _ - starting with a letter or digit")
    return tenant_id


def check_username(username: str) -> str:
    if not USERNAME.match(username or ""):
        raise ValueError(f"username {username!r}: use 1-128 of A-Z a-z 0-9 _ . @ -")
    return username


PROMPT_ID_TAKEN = "prompt_id_taken"


@dataclass(frozen=True)
class ReserveRequest:
    tenant: str
    prompt_id: str
    seconds: float  # estimated seconds of media the prompt will produce
    limit: float  # the plan's daily seconds; negative means unlimited
    max_active: int  # queued + running prompts the tenant may have
    day: str  # YYYY-MM-DD in the plan's time zone: the day charged, even if settled after midnight
    deadline: float  # when the reaper may settle the hold (crash, lost event)
    instance: str  # which ComfyUI holds it (its own holds are reaped when it restarts)
    now: float | None = None  # None: the store's clock
    # One admission of the prompt id (a client's retry of its own id is another): `admit` replays only the same
    # attempt's decision, and `abandon` refunds only the same attempt's hold.
    attempt: str = ""


@dataclass(frozen=True)
class RateLimit:
    """A GCRA limit checked together with a reservation: one request per `interval_s`, bursts of `burst`."""

    key: str
    interval_s: float
    burst: int

    @classmethod
    def per_minute(cls, name: str, per_minute: float, burst: int = 5) -> RateLimit:
        return cls(f"rl:{name}", 60.0 / per_minute, burst)


@dataclass(frozen=True)
class QuotaDecision:
    allowed: bool
    reason: str  # ok | quota_exceeded | concurrency_limit | rate_limited | prompt_id_taken
    used: float
    held: float
    limit: float
    active: int
    replay: bool = False  # the same prompt_id was reserved before: this is that decision
    retry_after: float = 0.0  # rate_limited: seconds until the next request would be allowed

    @classmethod
    def rate_limited(cls, wait: float, limit: float) -> QuotaDecision:
        """Refused before the quota was looked at: usage fields are not known."""
        return cls(False, "rate_limited", 0.0, 0.0, limit, 0, retry_after=wait)

    @classmethod
    def taken(cls, limit: float) -> QuotaDecision:
        """Refused because the prompt id was admitted before (by anyone): usage fields are not known."""
        return cls(False, PROMPT_ID_TAKEN, 0.0, 0.0, limit, 0)

    @property
    def remaining(self) -> float:
        return remaining_seconds(self.limit, self.used, self.held)


def remaining_seconds(limit: float, used: float, held: float) -> float:
    """Seconds a tenant may still reserve today: -1 for an unlimited plan (a negative limit); held seconds count
    as spent until they are settled."""
    return -1 if limit < 0 else max(0.0, limit - used - held)


@dataclass(frozen=True)
class Reservation:
    tenant: str
    prompt_id: str
    seconds: float
    day: str
    deadline: float
    instance: str
    state: str = "held"  # held | settled
    actual: float = 0.0
    outcome: str = ""
    started: float | None = None  # when its prompt began executing (the reaper charges or refunds by it)


@dataclass(frozen=True)
class Usage:
    used: float
    held: float
    active: int


@dataclass(frozen=True)
class LedgerEntry:
    time: float
    tenant: str
    prompt_id: str
    kind: str  # reserve | settle
    seconds: float  # reserve: the estimate held; settle: the seconds charged
    day: str
    outcome: str = ""  # settle: success | failed | cancelled | interrupted | timeout | reaped
