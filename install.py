"""What ComfyUI-Manager runs after cloning: install requirements.txt into the running interpreter.

Idempotent (pip skips what is satisfied), never installs or changes torch, torchvision or torchaudio:
it refuses a requirements file that names them and pins whatever torch build is already installed.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

TORCH_PACKAGES = ("torch", "torchvision", "torchaudio")
HERE = Path(__file__).resolve().parent


def requirement_name(line: str) -> str | None:
    line = line.split("#", 1)[0].strip()
    if not line or line.startswith("-"):
        return None
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line)
    return match.group(0).lower().replace("_", "-") if match else None


def torch_pins() -> list[str]:
    """Constraints that keep the installed torch packages exactly as they are."""
    pins = []
    for name in TORCH_PACKAGES:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return pins


def pip_command(requirements: Path, constraints: Path) -> list[str]:
    return [sys.executable, "-m", "pip", "install", "-r", str(requirements), "-c", str(constraints)]


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    dry_run = "--dry-run" in args
    requirements = Path(next((a for a in args if not a.startswith("--")), HERE / "requirements.txt"))
    lines = requirements.read_text(encoding="utf-8").splitlines()
    named_torch = [line for line in lines if requirement_name(line) in TORCH_PACKAGES]
    if named_torch:
        print(f"[comfyui-tenancy] refusing to install: {requirements} names {named_torch}; "
              "torch must come from your ComfyUI installation")
        return 1
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        handle.write("\n".join(torch_pins()) + "\n")
        constraints = Path(handle.name)
    command = pip_command(requirements, constraints)
    print(f"[comfyui-tenancy] {' '.join(command)}  (keeping {', '.join(torch_pins()) or 'no torch'})")
    result = subprocess.run(command) if not dry_run else subprocess.CompletedProcess(command, 0)
    constraints.unlink(missing_ok=True)
    outcome = "dry run, nothing installed" if dry_run else "installed" if result.returncode == 0 else "FAILED"
    print(f"[comfyui-tenancy] requirements: {outcome}")
    if result.returncode != 0 or dry_run:
        return result.returncode
    return fetch_grammars()


def fetch_grammars() -> int:
    """Extracts WeTextProcessing 1.0.3's grammar files from its wheel (downloaded without dependencies)."""
    spec = importlib.util.spec_from_file_location("glm_tts_grammars", HERE / "nodes" / "glm_tts" / "grammars.py")
    grammars = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(grammars)
    try:
        folder = grammars.fetch()
    except (OSError, ValueError, subprocess.CalledProcessError) as exc:
        print(f"[comfyui-tenancy] GLM-TTS grammars: FAILED ({exc})")
        return 1
    print(f"[comfyui-tenancy] GLM-TTS grammars: {grammars.PACKAGE}=={grammars.VERSION} in {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
