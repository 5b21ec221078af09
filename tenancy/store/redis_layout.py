"""Where the Redis store keeps its records: the key names, the arguments the Lua scripts take, and the records
read back from hashes.

Key layout (`{...}` is the Redis Cluster hash tag: the keys of one script always share a slot):

    tn:{acme}:res:<prompt_id>   hash   one reservation: seconds, day, deadline, instance, state, reason
                                       (refusals too, for replay), started once its prompt began executing,
                                       actual and outcome once settled; expires a
                                       week (KEPT_S) after it was refused or settled, never while held
    tn:{acme}:usage             hash   seconds used / held per day (fields <YYYY-MM-DD>:used / :held, exact)
    tn:{acme}:active            zset   the tenant's held prompt ids scored by deadline (ZCARD = active prompts)
    tn:{acme}:ledger            stream every reserve and settle, exactly as charged
    tn:{acme}:hist, :hist:entry zset, hash  with the cluster queue, the tenant's history: prompt ids in the order
                                       they finished, and their entries (`store/cluster_history.py`)
    tn:admission                set    tenants that ever reserved: the reaper and the ledger export walk it
    tn:rate:<key>               string a GCRA limit's theoretical arrival time, expiring when it no longer matters
    tn:prompt:<prompt_id>       string the prompt's owner ("" for an admin's), expiring a week after admission:
                                       the claim that makes a prompt id unique (set by reserve.lua when admitting)
    tn:output:<[folder, sub, name]>  string  JSON [tenant, prompt_id] of an output file
    tn:jti:<jti>                string a revoked access token, kept until the token expires (at least a minute)
    tn:duty:<name>              string held by the instance doing a duty this period (the outputs' bucket sweep),
                                       expiring with the period (SET NX PX)
    tn:{id}:tenants / :accounts / :keys   hash   JSON records by id (HSETNX creates, so a duplicate is a Conflict)
    tn:{id}:keys:revoked        set    revoked API key ids
    tn:{id}:refresh:<hash>      hash   a refresh token: data, family, expires, used (kept 7 days past expiry)
    tn:{id}:families:revoked    set    revoked refresh-token families
"""

from __future__ import annotations

import json

from ..records import ApiKey, Reservation, ReserveRequest, Tenant

ADMISSION = "tn:admission"


def tenant_key(tenant: str, name: str) -> str:
    return f"tn:{{{tenant}}}:{name}"


def admission_keys(tenant: str, prompt_id: str) -> list[str]:
    """The keys reserve.lua and settle.lua touch, all in the tenant's slot."""
    slot = tenant_key(tenant, "")
    return [f"{slot}res:{prompt_id}", f"{slot}usage", f"{slot}active", f"{slot}ledger"]


def reserve_arguments(r: ReserveRequest, kept_s: int) -> list:
    """reserve.lua's ARGV for a request (the admission bench sends redis-benchmark the same)."""
    return [r.prompt_id, repr(float(r.seconds)), repr(float(r.limit)), int(r.max_active), r.day,
            repr(float(r.deadline)), r.instance, now_argument(r.now), kept_s, r.attempt, r.tenant]


def prompt_key(prompt_id: str) -> str:
    return f"tn:prompt:{prompt_id}"


def output_key(folder: str, subfolder: str, filename: str) -> str:
    return "tn:output:" + json.dumps([folder, subfolder, filename])


def duty_key(name: str) -> str:
    return f"tn:duty:{name}"


def now_argument(now: float | None) -> str:
    """A script's `now`: empty for the server's clock (Redis TIME), shared by every instance."""
    return "" if now is None else repr(float(now))


def reservation(tenant: str, prompt_id: str, row: dict) -> Reservation:
    return Reservation(tenant, prompt_id, float(row["seconds"]), row["day"], float(row["deadline"]), row["instance"],
                       row["state"], float(row.get("actual", 0.0)), row.get("outcome", ""),
                       float(row["started"]) if "started" in row else None)


def tenant(data: dict) -> Tenant:
    return Tenant(id=data["id"], plan=data["plan"], status=data["status"], tags=tuple(data["tags"]))


def api_key(data: dict, revoked: bool) -> ApiKey:
    return ApiKey(**{**data, "revoked": data["revoked"] or revoked})
