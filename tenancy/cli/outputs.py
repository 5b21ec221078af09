"""`outputs sweep`: delete tenants' outputs past their plan's `output_days` once, now: from this machine's output
folder (`output/tenants/<tenant>/`) and from the bucket (with `outputs.store: s3`). What ComfyUI does by itself
every `outputs.sweep_s`; for `sweep_s: 0` (a cron job instead), or to see what a retention deletes."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..audit import AuditLog
from ..installation import ComfyNotFound, locate
from .common import CommandError, add_location_options, run_with_store


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("outputs", help="tenants' outputs: retention", description=__doc__)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sweep = actions.add_parser("sweep", help="delete outputs past their plan's output_days, once",
                               description=__doc__)
    add_location_options(sweep)
    sweep.add_argument("--output-dir", metavar="DIR", help="ComfyUI's output folder (default: <base dir>/output)")
    sweep.set_defaults(run=run_sweep)


def run_sweep(args: argparse.Namespace) -> int:
    from ..comfy.execution.output_retention import OutputRetention, open_bucket

    output = _output_folder(args)

    async def work(settings, store):
        audit = AuditLog(settings.path(settings.audit.path), settings.audit.max_bytes, settings.audit.backups)
        try:
            try:
                bucket = open_bucket(settings.outputs)
            except ImportError as exc:
                raise CommandError(f"outputs.store is s3 but {exc.name} is not installed: pip install -r "
                                   "requirements.txt") from None
            retention = OutputRetention(settings, store, output, bucket, audit)
            swept = await retention.sweep(claim_bucket=False)
        finally:
            audit.close()
        if not swept:
            print("no tenant's plan sets output_days: nothing deleted")
        for done in swept:
            print(f"{done.tenant}: {done.disk} deleted from {output}, {done.bucket} from the bucket "
                  f"(older than {done.days:g} days)")

    return run_with_store(args, work)


def _output_folder(args: argparse.Namespace) -> Path:
    if args.output_dir:
        return Path(args.output_dir).resolve()
    try:
        return locate(args.comfyui, args.base_dir).base / "output"
    except ComfyNotFound as exc:
        raise CommandError(f"{exc} (or name the output folder with --output-dir)") from None
