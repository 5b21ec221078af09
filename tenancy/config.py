"""The guard's configuration: typed settings loaded from YAML and validated key by key.

Every setting is declared once (type, default, bounds, one line of documentation); the commented default
file that `init` writes is generated from the same declarations, so documentation and defaults never diverge.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .admission import DEFAULT_SPEAKING_RATE

CONFIG_FILE = "config.yaml"
ENV_CONFIG = "TENANCY_CONFIG"
REQUIRE_GUARD_ENV = "TENANCY_REQUIRE_GUARD"  # "1": a guard that cannot install stops ComfyUI (set by `serve`)


class ConfigError(ValueError):
    """A setting is wrong: names the key, what is wrong and how to fix it."""

    def __init__(self, key: str, problem: str, fix: str, source: str = "") -> None:
        self.key, self.problem, self.fix, self.source = key, problem, fix, source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}`{key}`: {problem}. Fix: {fix}")


def setting(default: Any, doc: str, *, choices: tuple = (), minimum: float | None = None,
            maximum: float | None = None) -> Any:
    """A dataclass field with the metadata the validator and the default-file writer read."""
    meta = {"doc": doc, "choices": choices, "minimum": minimum, "maximum": maximum}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: _copy(default), metadata=meta)
    return field(default=default, metadata=meta)


def _copy(value: Any) -> Any:
    return yaml.safe_load(yaml.safe_dump(value))


DEFAULT_FORBIDDEN = ["inference_steps", "steps", "guidance_scale", "cfg", "dynamic_scale"]


@dataclass(frozen=True)
class Plan:
    daily_seconds: float = setting(150.0, "seconds of generated media per day; -1 means unlimited", minimum=-1)
    timezone: str = setting("UTC", "time zone of the day boundary for daily_seconds (IANA name)")
    weight: float = setting(1.0, "share of the GPU under contention (fair queueing weight)", minimum=0.01)
    max_concurrent: int = setting(2, "queued + running prompts at once", minimum=1)
    max_running: int = setting(0, "with the cluster queue: prompts running at once across the instances; 0 means "
                                  "max_concurrent", minimum=0)
    max_execution_s: float = setting(300.0, "a prompt running longer is interrupted (timeout)", minimum=1)
    prompts_per_minute: float = setting(30.0, "rate limit on /prompt", minimum=0.1)
    uploads_per_minute: float = setting(60.0, "rate limit on uploads", minimum=0.1)
    forbidden_inputs: list = setting([], "inputs reset to the node's default (any node)")
    clamp: dict = setting({}, "input name -> [min, max] the value is clamped into")
    max_duration_s: float = setting(-1.0, "largest `duration` input; -1 means no limit", minimum=-1)
    max_resolution: int = setting(-1, "largest width/height/min_resolution input; -1 means no limit",
                                  minimum=-1)
    max_frames: int = setting(-1, "largest frame count input; -1 means no limit", minimum=-1)
    allow_nodes: list = setting([], "if not empty, only these node classes may be used")
    deny_nodes: list = setting([], "node classes this plan may not use")
    history_items: int = setting(10000, "with the cluster queue: history entries kept per tenant, the oldest "
                                        "trimmed first (ComfyUI keeps 10000 per instance, all tenants together)",
                                 minimum=1, maximum=1_000_000)
    history_days: float = setting(0.0, "with the cluster queue: history entries older than this many days are "
                                       "trimmed; 0 keeps them until history_items", minimum=0, maximum=36500)
    output_days: float = setting(0.0, "outputs older than this many days are deleted, from each instance's output "
                                      "folder and from the bucket (outputs.sweep_s); 0 keeps them for ever; "
                                      "fractions allowed", minimum=0, maximum=36500)


DEFAULT_PLANS = {
    "basic": {"daily_seconds": 150, "weight": 1, "max_concurrent": 2, "forbidden_inputs": DEFAULT_FORBIDDEN,
              "max_duration_s": 10, "max_resolution": 512},
    "trial": {"daily_seconds": 600, "weight": 1, "max_concurrent": 2, "max_duration_s": 30,
              "max_resolution": 768},
    "premium": {"daily_seconds": 3600, "weight": 4, "max_concurrent": 8, "prompts_per_minute": 120},
}


@dataclass(frozen=True)
class ExternalIdentity:
    jwks: str = setting("", "JWKS file path or https URL of the identity provider's signing keys")
    algorithms: list = setting(["RS256"], "accepted signature algorithms (asymmetric only)")
    issuer: str = setting("", "the provider's `iss`")
    audience: str = setting("", "the `aud` our tokens must carry")
    tenant_claim: str = setting("tenant", "claim that names the tenant")
    role_claim: str = setting("role", "claim that names the role (member, tenant_admin)")
    discovery_url: str = setting("", "OpenID Connect discovery document (.../.well-known/openid-configuration); "
                                     "with client_id it adds 'sign in with <provider>' to the login page")
    client_id: str = setting("", "this ComfyUI's client id at the provider (authorization code + PKCE)")
    client_secret_file: str = setting("", "file holding the client secret, relative to this file; empty for a "
                                          "public client")
    display_name: str = setting("", "provider name on the login button (default: the issuer's host)")
    scopes: list = setting(["openid", "profile", "email"], "scopes requested at sign-in")
    redirect_url: str = setting("", "callback URL registered at the provider (default: this server's "
                                    "/tenancy/oidc/callback as the browser reached it)")


@dataclass(frozen=True)
class Auth:
    jwt_secret_file: str = setting("jwt.secret", "HS256 secret (generated 0600 by `init`), relative to this file")
    issuer: str = setting("comfyui-tenancy", "`iss` of the access tokens we mint")
    audience: str = setting("comfyui", "`aud` of the access tokens we mint")
    access_ttl_s: int = setting(900, "access token lifetime", minimum=30, maximum=7200)
    refresh_ttl_s: int = setting(1209600, "refresh token lifetime", minimum=300)
    leeway_s: int = setting(30, "clock skew tolerated on exp/nbf/iat", minimum=0, maximum=300)
    cookie_name: str = setting("tenancy_session", "browser session cookie")
    cookie_secure: str = setting("auto", "Secure flag on cookies: auto (when served over https), always, never",
                                 choices=("auto", "always", "never"))
    login_attempts_per_minute: float = setting(10.0, "login/token attempts per IP and per account",
                                               minimum=0.1)
    other_process_changes_s: float = setting(
        1.0, "SQLite store: longest time a change made by another process (the CLI, another ComfyUI on the same "
        "file) takes to reach this one, e.g. a revoked key; 0 looks on every request", minimum=0, maximum=60)
    external: ExternalIdentity | None = setting(None, "external identity provider (JWKS-verified tokens)")


@dataclass(frozen=True)
class Audit:
    path: str = setting("audit.log", "JSON-lines audit log, relative to this file")
    max_bytes: int = setting(50_000_000, "rotate when the log reaches this size", minimum=1024)
    backups: int = setting(10, "rotated files kept", minimum=0)


@dataclass(frozen=True)
class Cdn:
    url: str = setting("", "the CDN's base URL in front of the bucket, e.g. https://d111111abcdef8.cloudfront.net "
                       "(the object key is appended)")
    key_id: str = setting("", "id of the CDN's public key (CloudFront key pair id) the URLs are signed for")
    private_key_file: str = setting("", "PEM RSA private key of that key pair, relative to this file (keep it 0600)")


@dataclass(frozen=True)
class Outputs:
    store: str = setting("local", "where tenants' outputs are served from: local (this machine's output folder), or "
                         "s3 (uploaded after each prompt; downloads redirect to short-lived presigned URLs)",
                         choices=("local", "s3"))
    endpoint: str = setting("", "S3 API this ComfyUI uploads to, e.g. http://seaweedfs:8333 (empty: AWS S3)")
    public_endpoint: str = setting("", "S3 API as browsers reach it, named in presigned URLs (a URL is bound to "
                                   "its host; default: endpoint)")
    bucket: str = setting("", "bucket (it must exist); objects go under <prefix>tenants/<tenant>/")
    region: str = setting("us-east-1", "region the URLs are signed for")
    access_key: str = setting("", "access key id; empty: AWS_ACCESS_KEY_ID or boto3's other credential sources")
    secret_key: str = setting("", "secret access key; empty: AWS_SECRET_ACCESS_KEY or boto3's other sources")
    prefix: str = setting("", "prepended to every object key, e.g. `prod/`")
    url_ttl_s: int = setting(300, "lifetime of presigned download URLs", minimum=1, maximum=604800)
    multipart_mb: int = setting(16, "files from this size up are uploaded in parts of this size", minimum=5,
                                maximum=5120)
    cdn: Cdn | None = setting(None, "downloads redirect to CloudFront-signed CDN URLs instead of presigned bucket URLs")
    sweep_s: float = setting(3600.0, "how often each instance deletes outputs past their plan's output_days (the "
                             "first time a minute after start; one instance a period sweeps the bucket); 0: never "
                             "in ComfyUI (run `python -m tenancy outputs sweep` instead)", minimum=0, maximum=86400)


@dataclass(frozen=True)
class Cluster:
    enabled: bool = setting(False, "one queue for every instance sharing the Redis store: any instance accepts a "
                                   "prompt, idle workers pull the next in global fair order (needs store: redis://)")
    lease_s: float = setting(30.0, "a worker silent this long has lost its prompt: redelivered if it had not "
                                   "started, else failed (worker_lost)", minimum=1, maximum=3600)
    heartbeat_s: float = setting(5.0, "how often a worker renews its lease (at most a third of lease_s)",
                                 minimum=0.05, maximum=600)
    reap_s: float = setting(5.0, "how often each instance looks for lost prompts", minimum=0.05, maximum=600)
    poll_s: float = setting(0.25, "an idle worker asks for work this often (the longest a prompt waits while a "
                                  "worker idles)", minimum=0.01, maximum=10)
    max_redeliveries: int = setting(2, "times a prompt that never started is handed out again after its worker "
                                       "was lost; then it fails (redelivery_limit)", minimum=0, maximum=100)
    lookahead: int = setting(1, "in a tenant's turn, the longest (by estimate) of its next `lookahead` queued "
                                "prompts starts: a burst ends sooner, the tenant's own short prompts wait longer; "
                                "other tenants' turns are unchanged; 1 keeps each tenant's own order",
                             minimum=1, maximum=32)
    affinity_s: float = setting(0.0, "model affinity: an idle worker prefers a prompt whose models it ran last "
                                     "(no load) from the tenants at most this many fair-queue seconds (estimated "
                                     "seconds / weight) behind the fairest; the most another tenant may be passed "
                                     "over by; 0: off, strict fair order", minimum=0, maximum=86400)
    affinity_recent: int = setting(1, "model affinity: a worker counts as holding the models of its last N "
                                      "prompts that named any", minimum=1, maximum=8)


@dataclass(frozen=True)
class Config:
    enabled: bool = setting(True, "false runs the plugin's nodes without the guard (logged loudly)")
    store: str = setting("sqlite:///tenancy.db",
                         "sqlite:///FILE (relative to this file) or redis://HOST:PORT/DB for several instances")
    store_timeout_s: float = setting(1.0, "longest a store call may take before it counts as a failure: a Redis "
                                     "round trip, or the wait for another process's SQLite write lock (the server "
                                     "waits with it, so keep it short)", minimum=0.01, maximum=30)
    store_retry_s: float = setting(1.0, "after a store failure, calls fail at once (503) for this long, then one "
                                   "tries again: a hung store costs one timeout, not one per request",
                                   minimum=0.05, maximum=60)
    on_store_error: str = setting("deny", "when the store is unreachable: deny (503) or allow (uncharged)",
                                  choices=("deny", "allow"))
    master_secret_file: str = setting("master.secret", "key material for data encrypted at rest (voices), 0600")
    max_upload_mb: float = setting(50.0, "largest upload a tenant may send", minimum=0.001)
    signed_url_ttl_s: int = setting(900, "lifetime of signed download URLs", minimum=10, maximum=86400)
    outputs: Outputs = setting(None, "where tenants' outputs are kept and served from")
    auth: Auth = setting(None, "how callers prove who they are")
    audit: Audit = setting(None, "who did what")
    cluster: Cluster = setting(None, "the cluster queue (several ComfyUI instances, one queue)")
    plans: dict = setting(DEFAULT_PLANS, "plan name -> limits (fields as in `Plan`)")
    admin_weight: float = setting(8.0, "operators' fair-queueing weight", minimum=0.01)
    hold_timeout_s: float = setting(3600.0, "a quota hold older than this plus the plan's max_execution_s is "
                                            "settled by the reaper (crash, lost event)", minimum=60)
    reap: str = setting("charge_reservation", "a hold whose prompt started but whose result is lost for good (its "
                        "instance crashed): charge_reservation, or refund; one that never started is always refunded",
                        choices=("charge_reservation", "refund"))
    charge_failed: str = setting("refund", "failed, cancelled and interrupted prompts: refund, or charge "
                                           "the elapsed compute seconds", choices=("refund", "elapsed"))
    speaking_rate: dict = setting(DEFAULT_SPEAKING_RATE, "characters per second used to estimate speech")
    estimates: dict = setting({}, "node class -> estimate rule for packs that declare none "
                                  "(seconds_input | text_input | frames_input + fps_input | seconds)")
    ip_requests_per_minute: float = setting(60.0, "unauthenticated and login/token requests per IP",
                                            minimum=0.1)
    metrics_allow: list = setting(["127.0.0.1", "::1"], "IPs that may scrape /tenancy/metrics without a key")
    metrics_top_tenants: int = setting(20, "tenant label values kept in metrics; the rest are `other`",
                                       minimum=1)
    warmup: dict = setting({}, "models preloaded at start: family (sonic, glm_tts) -> loader options")
    instance: str = setting("", "this ComfyUI's name among several sharing a store (default: host:port)")
    routes: dict = setting({}, "route overrides: 'METHOD /path' -> public | tenant | admin")
    file_inputs: dict = setting({"SONIC_PreData": ["image", "audio"]},
                                "node class -> inputs that name input files (for packs that do not flag them)")
    output_inputs: dict = setting({"SaveImageDataSetToFolder": ["folder_name"],
                                   "SaveImageTextDataSetToFolder": ["folder_name"]},
                                  "node class -> inputs that name a place in the output folder, like filename_prefix")
    private_caches: int = setting(4, "tenants whose node-output cache is kept between their prompts, the most "
                                  "recently active ones (operators count as one): each may hold what one ComfyUI's "
                                  "cache holds (docs/DEPLOYMENT.md); 1 keeps only the last owner's, as one shared "
                                  "ComfyUI would", minimum=1, maximum=64)
    model_routing: dict = setting({}, "tag -> {input name: {model file: replacement}} (gray release)")
    base_dir: str = setting("", "set at load time: the folder relative paths are taken from")

    def path(self, relative: str) -> Path:
        """A path setting resolved against the config file's folder."""
        p = Path(os.path.expanduser(relative))
        return p if p.is_absolute() else Path(self.base_dir) / p


# -- loading ---------------------------------------------------------------------------------------

def load(path: Path) -> Config:
    """Read and validate a config file; raises ConfigError naming the offending key."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError("(file)", f"{path} does not exist", "run `python -m tenancy init`") from None
    except yaml.YAMLError as exc:
        raise ConfigError("(file)", f"not valid YAML ({exc})", "fix the syntax at the line shown",
                          str(path)) from None
    return from_mapping(raw, base_dir=Path(path).resolve().parent, source=str(path))


def from_mapping(raw: Any, base_dir: Path, source: str = "") -> Config:
    try:
        config = _build(Config, raw, "")
    except ConfigError as exc:
        raise ConfigError(exc.key, exc.problem, exc.fix, source) from None
    return dataclasses.replace(config, base_dir=str(base_dir))


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(prefix or "(top level)", f"expected a mapping, got {type(raw).__name__}",
                          "write `key: value` lines under it")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.name != "base_dir"}
    for key in raw:
        if key not in known:
            raise ConfigError(f"{prefix}{key}", "unknown setting",
                              f"remove it or use one of: {', '.join(sorted(known))}")
    values = {}
    for name, f in known.items():
        key = f"{prefix}{name}"
        if name in raw:
            values[name] = _check(hints[name], raw[name], key, f.metadata)
        elif is_dataclass_type(hints[name]) and f.default is None and not is_optional(hints[name]):
            values[name] = _build(hints[name], {}, f"{key}.")
    if cls is Config:
        plans_raw = values.get("plans", _copy(DEFAULT_PLANS))
        values["plans"] = {name: _build(Plan, body, f"plans.{name}.") for name, body in plans_raw.items()}
        _check_routes(values.get("routes", {}))
        _check_cluster(values["cluster"], values.get("store", Config.store))
    if cls is Plan:
        _check_timezone(values.get("timezone", "UTC"), prefix)
    if cls is Outputs:
        _check_outputs(values, prefix)
    return cls(**values)


def _check_routes(routes: Mapping) -> None:
    for key, cls in routes.items():
        parts = str(key).split(" ", 1)
        if len(parts) != 2 or not parts[1].startswith("/"):
            raise ConfigError(f"routes.{key}", "expected 'METHOD /path'", "write e.g. 'GET /my_plugin/list'")
        if cls not in ("public", "tenant", "admin"):
            raise ConfigError(f"routes.{key}", f"unknown class {cls!r}", "use public, tenant or admin")


def _check_outputs(values: Mapping, prefix: str) -> None:
    if values.get("store") != "s3":
        return
    if not values.get("bucket"):
        raise ConfigError(f"{prefix}bucket", "outputs.store is s3 but no bucket is named", "name an existing bucket")
    if bool(values.get("access_key")) != bool(values.get("secret_key")):
        raise ConfigError(f"{prefix}secret_key", "give both access_key and secret_key, or neither",
                          "set both, or leave both empty to take them from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
    cdn = values.get("cdn")
    urls = {"endpoint": values.get("endpoint"), "public_endpoint": values.get("public_endpoint"),
            "cdn.url": cdn.url if cdn else None}
    for name, url in urls.items():
        if url and not str(url).startswith(("http://", "https://")):
            raise ConfigError(f"{prefix}{name}", f"{url!r} is not a URL", "write http(s)://host:port")
    for name in ("url", "key_id", "private_key_file"):
        if cdn and not getattr(cdn, name):
            raise ConfigError(f"{prefix}cdn.{name}", "a CDN needs its URL, key id and private key", "set it, or "
                              "remove `cdn` to redirect to the bucket's own presigned URLs")


def _check_cluster(cluster: Cluster, store: str) -> None:
    if not cluster.enabled:
        return
    if not store.startswith(("redis://", "rediss://")):
        raise ConfigError("cluster.enabled", f"the cluster queue lives in Redis, but the store is {store!r}",
                          "set `store: redis://HOST:PORT/DB` (the same for every instance), or `cluster.enabled: "
                          "false`")
    if cluster.heartbeat_s * 3 > cluster.lease_s:
        raise ConfigError("cluster.heartbeat_s", f"{cluster.heartbeat_s:g} s leaves a lease of "
                          f"{cluster.lease_s:g} s fewer than three heartbeats: one late one would lose the prompt",
                          f"use at most {cluster.lease_s / 3:g}, or raise cluster.lease_s")


def _check_timezone(name: str, prefix: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{prefix}timezone", f"unknown time zone {name!r}",
                          "use an IANA name such as UTC or Europe/Berlin") from None


def is_optional(hint: Any) -> bool:
    return isinstance(hint, types.UnionType) and type(None) in hint.__args__


def is_dataclass_type(hint: Any) -> bool:
    if is_optional(hint):
        hint = next(a for a in hint.__args__ if a is not type(None))
    return dataclasses.is_dataclass(hint)


def _check(hint: Any, value: Any, key: str, meta: Mapping) -> Any:
    if is_optional(hint):
        if value is None:
            return None
        hint = next(a for a in hint.__args__ if a is not type(None))
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, f"{key}.")
    expected = {bool: (bool,), int: (int,), float: (int, float), str: (str,), list: (list,), dict: (dict,)}[hint]
    if (isinstance(value, bool) and hint is not bool) or not isinstance(value, expected):
        raise ConfigError(key, f"expected {hint.__name__}, got {value!r}", f"write a value of type {hint.__name__}")
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(key, f"{value!r} is not allowed", f"use one of: {', '.join(meta['choices'])}")
    lo, hi = meta.get("minimum"), meta.get("maximum")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f"{lo if lo is not None else '-inf'} .. {hi if hi is not None else 'inf'}"
        raise ConfigError(key, f"{value!r} is out of range", f"use a value in {bounds}")
    return float(value) if hint is float else value
