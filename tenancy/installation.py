"""Where a ComfyUI lives on disk: its checkout, its base folder, its user folder, and how to start it.

Reads files only; never imports ComfyUI (the CLI and the tests use it from outside ComfyUI).
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

PLUGIN_ROOT = Path(__file__).resolve().parents[1]
PLUGIN_LINK_NAME = "comfyui-tenancy"
DEV_COMFYUI = PLUGIN_ROOT / ".cache" / "comfyui-0.3.75"


@dataclass(frozen=True)
class ComfyHome:
    root: Path  # the ComfyUI checkout (main.py)
    base: Path  # models/, input/, output/, user/, custom_nodes/

    @property
    def version(self) -> str:
        text = (self.root / "comfyui_version.py").read_text(encoding="utf-8")
        match = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", text)
        return match.group(1) if match else "unknown"

    @property
    def user_dir(self) -> Path:
        return self.base / "user"

    @property
    def tenancy_dir(self) -> Path:
        return self.user_dir / "tenancy"

    @property
    def models_dir(self) -> Path:
        return self.base / "models"

    @property
    def plugin_link(self) -> Path:
        return self.base / "custom_nodes" / PLUGIN_LINK_NAME

    def plugin_installed(self) -> bool:
        """The plugin is in this ComfyUI's custom_nodes (linked, or this checkout itself lives there)."""
        if PLUGIN_ROOT.parent == (self.base / "custom_nodes").resolve():
            return True
        return self.plugin_link.exists() and self.plugin_link.resolve() == PLUGIN_ROOT

    def link_plugin(self) -> bool:
        """Link this checkout into custom_nodes (no copy). Returns True when a link was made."""
        if self.plugin_installed():
            return False
        self.plugin_link.parent.mkdir(parents=True, exist_ok=True)
        if self.plugin_link.is_symlink():
            self.plugin_link.unlink()
        self.plugin_link.symlink_to(PLUGIN_ROOT, target_is_directory=True)
        return True

    def command(self, host: str, port: int, *extra: str, python: str = sys.executable) -> list[str]:
        args = [python, str(self.root / "main.py"), "--listen", host, "--port", str(port),
                "--disable-auto-launch"]
        if self.base != self.root:
            args += ["--base-directory", str(self.base)]
        return args + list(extra)


class ComfyNotFound(RuntimeError):
    pass


def locate(comfyui: str | os.PathLike | None = None, base_dir: str | os.PathLike | None = None) -> ComfyHome:
    """The ComfyUI to use: --comfyui, else $COMFYUI_DIR, else the one this checkout is installed in,
    else the development copy that scripts/setup.sh provisions."""
    candidates = [comfyui, os.environ.get("COMFYUI_DIR")]
    if PLUGIN_ROOT.parent.name == "custom_nodes":
        candidates.append(PLUGIN_ROOT.parent.parent)
    candidates.append(DEV_COMFYUI)
    for candidate in candidates:
        if candidate and (Path(candidate) / "main.py").is_file():
            root = Path(candidate).resolve()
            return ComfyHome(root=root, base=Path(base_dir).resolve() if base_dir else root)
        if candidate and candidate in (comfyui, os.environ.get("COMFYUI_DIR")):
            raise ComfyNotFound(f"{candidate} is not a ComfyUI checkout (no main.py)")
    raise ComfyNotFound("no ComfyUI found: pass --comfyui DIR, set COMFYUI_DIR, or run `make setup`")
