"""The plugin's model folders, registered with ComfyUI's folder_paths (extra_model_paths.yaml honoured)."""

from __future__ import annotations

from pathlib import Path

FOLDERS = {"sonic": ("sonic",), "glm_tts": ("glm_tts",)}


def register() -> None:
    """Called once at plugin import inside ComfyUI: models/sonic and models/glm_tts become known folders."""
    import folder_paths

    for name in FOLDERS:
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
