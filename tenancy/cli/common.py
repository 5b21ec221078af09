"""Options and look-ups shared by the commands: which ComfyUI, which config file."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import config as config_module
from ..comfy.home import ComfyHome, ComfyNotFound, locate


def add_location_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--comfyui", metavar="DIR", help="ComfyUI checkout (default: $COMFYUI_DIR, "
                        "the ComfyUI this plugin is installed in, or the development copy)")
    parser.add_argument("--base-dir", metavar="DIR", help="ComfyUI base directory (models, input, output, user)")
    parser.add_argument("--config", metavar="FILE", help="config file (default: <user dir>/tenancy/config.yaml)")


def home_of(args: argparse.Namespace) -> ComfyHome:
    from . import CommandError

    try:
        return locate(args.comfyui, args.base_dir)
    except ComfyNotFound as exc:
        raise CommandError(str(exc)) from None


def config_path_of(args: argparse.Namespace, home: ComfyHome) -> Path:
    return Path(args.config).resolve() if args.config else home.tenancy_dir / config_module.CONFIG_FILE
