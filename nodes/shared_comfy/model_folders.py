"""The plugin's model folders, registered with ComfyUI's folder_paths (extra_model_paths.yaml honoured)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def register(names: Iterable[str]) -> None:
    """Called once at plugin import inside ComfyUI with the guard's list (`tenancy.bootstrap.MODEL_FOLDERS`, the
    folders `init` creates): models/<name> becomes a known folder for each."""
    import folder_paths

    for name in names:
        default = str(Path(folder_paths.models_dir) / name)
        if name in folder_paths.folder_names_and_paths:
            paths = folder_paths.folder_names_and_paths[name][0]
            if default not in paths:
                paths.append(default)
        else:
            folder_paths.folder_names_and_paths[name] = ([default], set())


def roots(name: str) -> list[Path]:
    """Every folder configured for `name` (models/<name> plus extra_model_paths.yaml entries)."""
    import folder_paths

    return [Path(p) for p in folder_paths.get_folder_paths(name)]


def find(name: str, relative: str) -> Path | None:
    """The first configured folder of `name` that contains `relative`."""
    for root in roots(name):
        if (root / relative).exists():
            return root / relative
    return None
