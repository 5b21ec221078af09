"""Which caller may reach which route: one table over (method, normalised route pattern), deny by default.

Patterns are the router's own (`/history/{prompt_id}`), so classification never depends on how a client
spells a path. `/x` and `/api/x` are one route. Anything not in the table (another plugin's route, a route a
newer ComfyUI adds) is `admin` unless the operator's config opens it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache

PUBLIC, TENANT, ADMIN = "public", "tenant", "admin"
CLASSES = (PUBLIC, TENANT, ADMIN)

# (method, pattern) -> class. "*" as method: every method. Static folders end in "/*".
TABLE: dict[tuple[str, str], str] = {
    # The editor itself must load so it can show the login; these serve files anyone may read.
    ("GET", "/"): PUBLIC,
    ("GET", "/*"): PUBLIC,
    ("GET", "/extensions/*"): PUBLIC,
    ("GET", "/templates/*"): PUBLIC,
    ("GET", "/templates/{path}"): PUBLIC,
    ("GET", "/docs/*"): PUBLIC,
    ("GET", "/workflow_templates/*"): PUBLIC,
    # Our own routes.
    ("GET", "/tenancy/health"): PUBLIC,
    ("GET", "/tenancy/login"): PUBLIC,
    ("POST", "/tenancy/login"): PUBLIC,
    ("POST", "/tenancy/token"): PUBLIC,
    ("POST", "/tenancy/refresh"): PUBLIC,
    ("GET", "/tenancy/files/{token}"): PUBLIC,
    ("GET", "/tenancy/metrics"): PUBLIC,  # its handler admits operators and the configured scraper IPs
    ("POST", "/tenancy/logout"): TENANT,
    ("GET", "/tenancy/me"): TENANT,
    ("GET", "/tenancy/outputs/{prompt_id}"): TENANT,
    ("*", "/tenancy/admin/{tail}"): ADMIN,
    ("GET", "/tenancy/admin"): ADMIN,
    ("GET", "/tenancy/login/options"): PUBLIC,
    ("GET", "/tenancy/oidc/start"): PUBLIC,
    ("GET", "/tenancy/oidc/callback"): PUBLIC,
    ("GET", "/tenancy/queue"): TENANT,
    # A tenant_admin manages its own tenant's members and keys; the handlers check the role and the tenant.
    ("GET", "/tenancy/admin/tenants/{tenant_id}/members"): TENANT,
    ("POST", "/tenancy/admin/tenants/{tenant_id}/members"): TENANT,
    ("PATCH", "/tenancy/admin/tenants/{tenant_id}/members/{username}"): TENANT,
    ("GET", "/tenancy/admin/tenants/{tenant_id}/keys"): TENANT,
    ("POST", "/tenancy/admin/tenants/{tenant_id}/keys"): TENANT,
    ("DELETE", "/tenancy/admin/keys/{key_id}"): TENANT,
    # ComfyUI, confined per tenant by the guard.
    ("GET", "/ws"): TENANT,
    ("GET", "/prompt"): TENANT,
    ("POST", "/prompt"): TENANT,
    ("GET", "/queue"): TENANT,
    ("POST", "/queue"): TENANT,
    ("GET", "/history"): TENANT,
    ("GET", "/history/{prompt_id}"): TENANT,
    ("POST", "/history"): TENANT,
    ("POST", "/interrupt"): TENANT,
    ("GET", "/jobs"): TENANT,
    ("GET", "/jobs/{job_id}"): TENANT,
    ("POST", "/jobs/{job_id}/cancel"): TENANT,
    ("POST", "/jobs/cancel"): TENANT,
    ("POST", "/upload/image"): TENANT,
    ("POST", "/upload/mask"): TENANT,
    ("GET", "/view"): TENANT,
    ("GET", "/object_info"): TENANT,
    ("GET", "/object_info/{node_class}"): TENANT,
    ("GET", "/embeddings"): TENANT,
    ("GET", "/models"): TENANT,
    ("GET", "/models/{folder}"): TENANT,
    ("GET", "/view_metadata/{folder_name}"): TENANT,
    ("GET", "/extensions"): TENANT,
    ("GET", "/features"): TENANT,
    ("GET", "/system_stats"): TENANT,  # tenants get a redacted copy (no argv, no paths)
    ("GET", "/settings"): TENANT,
    ("POST", "/settings"): TENANT,
    ("GET", "/settings/{id}"): TENANT,
    ("POST", "/settings/{id}"): TENANT,
    ("GET", "/users"): TENANT,  # tenants get a single-user answer; the real list is the admin's
    ("GET", "/userdata"): TENANT,
    ("GET", "/v2/userdata"): TENANT,
    ("GET", "/userdata/{file}"): TENANT,
    ("POST", "/userdata/{file}"): TENANT,
    ("DELETE", "/userdata/{file}"): TENANT,
    ("POST", "/userdata/{file}/move/{dest}"): TENANT,
    ("GET", "/workflow_templates"): TENANT,
    ("GET", "/i18n"): TENANT,
    ("GET", "/global_subgraphs"): TENANT,
    ("GET", "/global_subgraphs/{id}"): TENANT,
    ("GET", "/node_replacements"): TENANT,
    ("GET", "/experiment/models"): TENANT,
    ("GET", "/experiment/models/{folder}"): TENANT,
    # Operators only: process-wide effects, server paths and logs, user management, node installs.
    ("POST", "/free"): ADMIN,
    # Newer ComfyUI's asset library (owner-scoped only by the spoofable comfy-user): operators only.
    ("*", "/assets"): ADMIN,
    ("*", "/tags"): ADMIN,
    ("POST", "/users"): ADMIN,
    ("GET", "/experiment/models/preview/{folder}/{path_index}/{filename}"): ADMIN,
    ("GET", "/internal/logs"): ADMIN,
    ("GET", "/internal/logs/raw"): ADMIN,
    ("PATCH", "/internal/logs/subscribe"): ADMIN,
    ("GET", "/internal/folder_paths"): ADMIN,
    ("GET", "/internal/files/{directory_type}"): ADMIN,
}

# Method-independent prefixes that are always admin (ComfyUI-Manager and friends), listed so the live-router
# check knows they are deliberate.
ADMIN_PREFIXES = ("/manager/", "/customnode/", "/snapshot/", "/externalmodel/", "/comfyui_manager/", "/assets/")


@lru_cache(maxsize=4096)  # patterns are the router's own: a small, fixed set, asked for on every request
def normalise(pattern: str) -> str:
    """The table key of a route pattern: no `/api` prefix, no regex in `{name:regex}` placeholders."""
    while pattern == "/api" or pattern.startswith("/api/"):
        pattern = pattern[4:] or "/"
    return _PLACEHOLDER_REGEX.sub(r"{\1}", pattern)


_PLACEHOLDER_REGEX = re.compile(r"\{([^{}:]+):(?:[^{}]|\{[^{}]*\})*\}")


def route_class(method: str, pattern: str | None, overrides: Mapping[str, str] | None = None) -> tuple[str, bool]:
    """(class, explicitly listed). `pattern` is None when no route matched: such requests are admin-only."""
    if pattern is None:
        return ADMIN, False
    key = normalise(pattern)
    method = method.upper()
    if overrides:
        for spec in (f"{method} {key}", f"GET {key}" if method == "HEAD" else "", f"* {key}"):
            if spec in overrides:
                return overrides[spec], True
    if method == "HEAD":
        method = "GET"
    for candidate in ((method, key), ("*", key), (method, _static_folder(key))):
        if candidate in TABLE:
            return TABLE[candidate], True
    if key.startswith("/tenancy/admin/"):
        return ADMIN, True
    if key.startswith(ADMIN_PREFIXES):
        return ADMIN, True
    return ADMIN, False


def normalise_overrides(overrides: Mapping[str, str]) -> dict[str, str]:
    """Config overrides keyed like the table: `GET /api/x` and `GET /x` are one route."""
    result = {}
    for spec, cls in overrides.items():
        method, _, pattern = spec.partition(" ")
        result[f"{method.upper()} {normalise(pattern.strip())}"] = cls
    return result


def _static_folder(key: str) -> str:
    """`/extensions/<plugin>/*` -> `/extensions/*`: a static folder is classified by its first segment."""
    if not key.endswith("/*"):
        return key
    first = key.strip("/").split("/", 1)[0]
    return f"/{first}/*" if first != "*" else "/*"


def allowed(cls: str, authenticated: bool, is_admin: bool) -> bool:
    return cls == PUBLIC or (cls == TENANT and authenticated) or (cls == ADMIN and is_admin)
