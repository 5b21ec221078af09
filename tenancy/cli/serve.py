"""`serve`: run ComfyUI with the plugin loaded and the guard on, in the foreground; Ctrl-C stops it."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess

from .. import bootstrap
from .. import config as config_module
from .common import CommandError, add_location_options, config_path_of, home_of

STOP_GRACE_S = 20


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("serve", help="run the guarded ComfyUI in the foreground", description=__doc__)
    add_location_options(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8188, help="port (default 8188)")
    parser.add_argument("--cpu", action="store_true", help="force CPU even when a GPU is present")
    parser.add_argument("comfy_args", nargs=argparse.REMAINDER,
                        help="after `--`: more ComfyUI arguments, e.g. -- --cache-none")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    home = home_of(args)
    config_path = config_path_of(args, home)
    try:
        for line in bootstrap.initialise(config_path.parent, config_path, models_dir=home.models_dir):
            print(f"[tenancy] {line}")
        settings = config_module.load(config_path)
    except config_module.ConfigError as exc:
        raise CommandError(f"{exc}\nThe guard cannot start with this config; `serve` never runs unguarded.") \
            from None
    if not settings.enabled:
        raise CommandError(f"{config_path} sets `enabled: false`. `serve` only runs guarded: set "
                           "`enabled: true`, or start ComfyUI's main.py yourself to run without the guard.")
    if home.link_plugin():
        print(f"[tenancy] linked the plugin into {home.plugin_link}")
    extra = [a for a in args.comfy_args if a != "--"]
    if (args.cpu or not _gpu_available()) and "--cpu" not in extra:
        extra.insert(0, "--cpu")
    if not any(a == "--database-url" or a.startswith("--database-url=") for a in extra):
        # ComfyUI's database (newer ComfyUI's asset table) in the base folder's user/, where it may write;
        # its default lies in the checkout, which a read-only install or a second instance cannot share.
        extra += ["--database-url", database_url(home)]
    env = dict(os.environ, **{config_module.ENV_CONFIG: str(config_path), config_module.REQUIRE_GUARD_ENV: "1"})
    command = home.command(args.host, args.port, *extra)
    print(f"[tenancy] ComfyUI {home.version} at {home.root} -> http://{args.host}:{args.port}/")
    return _run_foreground(command, env, cwd=home.root)


def database_url(home) -> str:
    return f"sqlite:///{(home.user_dir / 'comfyui.db').resolve()}"


def _gpu_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _run_foreground(command: list[str], env: dict, cwd) -> int:
    # A shell that starts us in the background leaves SIGINT ignored, and ComfyUI would inherit that: take
    # Ctrl-C back so it stops us (and, forwarded, ComfyUI) wherever we were started from.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # Own process group: Ctrl-C reaches only us, and we forward exactly one SIGINT.
    child = subprocess.Popen(command, env=env, cwd=cwd, start_new_session=True)
    signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGINT))
    try:
        return child.wait()
    except KeyboardInterrupt:
        child.send_signal(signal.SIGINT)
        try:
            child.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        print("[tenancy] stopped")
        return 0
