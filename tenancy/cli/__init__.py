"""The `comfy-tenancy` / `python -m tenancy` command line: one module per command group."""

from __future__ import annotations

import argparse
import sys

from ..config import ConfigError
from . import cluster, demo, doctor, init, key, outputs, serve, tenant, usage, user
from .common import CommandError

GROUPS = (init, serve, doctor, tenant, user, key, usage, outputs, cluster, demo)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="comfy-tenancy", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in GROUPS:
        group.register(commands)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

