"""`init`: write the default config and a JWT secret into the ComfyUI user folder, unless they exist."""

from __future__ import annotations

import argparse

from .. import bootstrap
from .common import add_location_options, config_path_of, home_of


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("init", help="write a commented default config and a 0600 JWT secret",
                                 description=__doc__)
    add_location_options(parser)
    parser.add_argument("--store", metavar="URL",
                        help="store URL (default: an SQLite file beside the config)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    home = home_of(args)
    config_path = config_path_of(args, home)
    done = bootstrap.initialise(config_path.parent, config_path, args.store, home.models_dir)
    for line in done or [f"nothing to do: {config_path} exists"]:
        print(line)
    return 0
