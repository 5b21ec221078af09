"""Several ComfyUI instances of one guarded service (one store, one config and secrets), for what they share."""

from __future__ import annotations

from .comfyui import ComfyUI
from .tenants import Seeded, seed, share_config


def start_instances(tmp_path_factory, prefix: str, count: int, overrides: dict,
                    env: dict | None = None, plugins: tuple = ()) -> tuple[list[ComfyUI], Seeded]:
    """`count` guarded ComfyUIs: the first seeded with `overrides` (its store shared by the others), the others
    given its config and secrets; `plugins`: more custom nodes for each (`ComfyUI.plugins` entries). Started one at
    a time (a ComfyUI start is CPU-heavy); the caller stops them."""
    bases = [tmp_path_factory.mktemp(f"{prefix}-{i}") for i in range(count)]
    seeded = seed(bases[0], overrides)
    for base in bases[1:]:
        share_config(base, bases[0])
    servers: list[ComfyUI] = []
    try:
        for base in bases:
            server = ComfyUI(base, env={"TENANCY_REQUIRE_GUARD": "1", **(env or {})})
            server.plugins += tuple(plugins)
            servers.append(server.start())
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers, seeded
