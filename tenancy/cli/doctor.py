"""`doctor`: check the installation and say how to fix each problem."""

from __future__ import annotations

import argparse
import asyncio
import json
import stat
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .. import config as config_module
from ..bootstrap import MODEL_FOLDERS
from ..installation import ComfyHome, ComfyNotFound, locate
from ..store import StoreUnavailable, open_store
from .common import add_location_options, config_path_of

MARK = {"ok": "✔", "warn": "!", "fail": "✘"}


@dataclass(frozen=True)
class Finding:
    status: str  # ok | warn | fail
    what: str
    fix: str = ""


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("doctor", help="check the installation and explain fixes", description=__doc__)
    add_location_options(parser)
    parser.add_argument("--url", default="http://127.0.0.1:8188",
                        help="running instance to check (default http://127.0.0.1:8188)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    findings = list(examine(args))
    for f in findings:
        print(f"{MARK[f.status]} {f.what}")
        if f.fix:
            print(f"    fix: {f.fix}")
    failed = sum(f.status == "fail" for f in findings)
    print("all green" if not failed else f"{failed} problem(s)")
    return 1 if failed else 0


def examine(args: argparse.Namespace) -> Iterator[Finding]:
    try:
        home = locate(args.comfyui, args.base_dir)
    except ComfyNotFound as exc:
        yield Finding("fail", str(exc), "pass --comfyui DIR, set COMFYUI_DIR, or run `make setup`")
        return
    yield Finding("ok", f"ComfyUI {home.version} at {home.root}")
    yield _plugin_installed(home)
    yield _plugin_running(args.url)
    config_path = config_path_of(args, home)
    try:
        settings = config_module.load(config_path)
    except config_module.ConfigError as exc:
        yield Finding("fail", f"config invalid: {exc}", exc.fix)
        return
    yield Finding("ok", f"config valid: {config_path}")
    yield _secret(settings)
    yield _store(settings)
    if settings.outputs.store == "s3":
        yield outputs_bucket(settings.outputs)
    for name in MODEL_FOLDERS:
        folder = home.models_dir / name
        yield (Finding("ok", f"model folder {folder}") if folder.is_dir() else
               Finding("fail", f"model folder {folder} is missing", f"run `python -m tenancy init` or mkdir {folder}"))


def _plugin_installed(home: ComfyHome) -> Finding:
    if home.plugin_installed():
        return Finding("ok", f"plugin installed in {home.base / 'custom_nodes'}")
    return Finding("fail", f"plugin not in {home.base / 'custom_nodes'}",
                   "`python -m tenancy serve` links it, or clone this repo into custom_nodes/")


def _plugin_running(url: str) -> Finding:
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/tenancy/health", timeout=5) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return Finding("fail", f"ComfyUI at {url} answers but the plugin's guard is not loaded",
                           "check its start-up log for `[tenancy]` lines; `enabled: false` disables the guard")
        body = {"status": f"HTTP {exc.code}"}
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return Finding("warn", f"no ComfyUI answering at {url} ({exc})",
                       "start it with `python -m tenancy serve`, or pass --url")
    status = body.get("status")
    if status == "ok":
        return Finding("ok", f"plugin loaded and guard on at {url}")
    return Finding("fail", f"guard at {url} reports {status}", "see its log and `GET /tenancy/health`")


def _secret(settings: config_module.Config) -> Finding:
    path = settings.path(settings.auth.jwt_secret_file)
    if not path.exists():
        return Finding("fail", f"JWT secret {path} is missing", "run `python -m tenancy init`")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return Finding("fail", f"JWT secret {path} is readable by others ({oct(mode)})", f"chmod 600 {path}")
    return Finding("ok", f"JWT secret {path} (0600)")


def _store(settings: config_module.Config) -> Finding:
    async def probe(opener: Callable) -> str:
        store = opener()
        try:
            await store.ping()
            return store.description
        finally:
            await store.close()

    try:
        where = asyncio.run(probe(lambda: open_store(settings.store, settings.path("."))))
    except (StoreUnavailable, ValueError) as exc:
        return Finding("fail", f"store unreachable: {exc}", "check `store:` in the config and that the server runs")
    return Finding("ok", f"store reachable: {where}")


def outputs_bucket(outputs: config_module.Outputs) -> Finding:
    """With `outputs.store: s3`, the bucket must answer this machine with the configured credentials."""
    from ..store.object_store import ObjectStore

    where = f"{outputs.endpoint or 'AWS S3'} bucket {outputs.bucket}"
    try:
        bucket = ObjectStore(bucket=outputs.bucket, endpoint=outputs.endpoint, region=outputs.region,
                             access_key=outputs.access_key, secret_key=outputs.secret_key)
    except ImportError:
        return Finding("fail", "outputs.store is s3 but boto3 is not installed", "pip install -r requirements.txt")
    if not bucket.reachable():
        return Finding("fail", f"outputs bucket unreachable: {where}", "check outputs.endpoint, outputs.bucket (it "
                       "must exist) and the credentials (outputs.access_key or AWS_ACCESS_KEY_ID)")
    return Finding("ok", f"outputs bucket reachable: {where}")
