"""Options and look-ups shared by the commands: which ComfyUI, which config file."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from .. import config as config_module
from ..accounts import AdminError
from ..installation import ComfyHome, ComfyNotFound, locate
from ..store import open_store


class CommandError(RuntimeError):
    """A user-facing failure: printed without a traceback."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def add_location_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--comfyui", metavar="DIR", help="ComfyUI checkout (default: $COMFYUI_DIR, "
                        "the ComfyUI this plugin is installed in, or the development copy)")
    parser.add_argument("--base-dir", metavar="DIR", help="ComfyUI base directory (models, input, output, user)")
    parser.add_argument("--config", metavar="FILE", help="config file (default: <user dir>/tenancy/config.yaml)")


def home_of(args: argparse.Namespace) -> ComfyHome:
    try:
        return locate(args.comfyui, args.base_dir)
    except ComfyNotFound as exc:
        raise CommandError(str(exc)) from None


def config_path_of(args: argparse.Namespace, home: ComfyHome) -> Path:
    return Path(args.config).resolve() if args.config else home.tenancy_dir / config_module.CONFIG_FILE


def load_settings(args: argparse.Namespace) -> config_module.Config:
    """The settings of --config, else of the located ComfyUI's config (an explicit file needs no ComfyUI)."""
    if args.config:
        return config_module.load(Path(args.config).resolve())
    return config_module.load(config_path_of(args, home_of(args)))


def run_with_store(args: argparse.Namespace, work) -> int:
    """Open the configured store, run `work(settings, store)` (a coroutine function), close the store."""

    settings = load_settings(args)

    async def main():
        store = open_store(settings.store, settings.path("."))
        try:
            return await work(settings, store)
        finally:
            await store.close()

    try:
        return int(asyncio.run(main()) or 0)
    except (AdminError, ValueError) as exc:
        raise CommandError(str(exc)) from None


def parse_duration(text: str) -> float:
    """`90s`, `15m`, `12h`, `30d` -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units and text[:-1].replace(".", "", 1).isdigit():
        return float(text[:-1]) * units[text[-1]]
    if text.replace(".", "", 1).isdigit():
        return float(text)
    raise argparse.ArgumentTypeError(f"{text!r}: use a number with s, m, h or d (e.g. 30d)")
