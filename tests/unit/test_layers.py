"""The layering contracts in pyproject.toml (`[tool.importlinter]`) hold, cover every module, and catch a break."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
ADAPTER_AND_ENTRY = {"comfy", "cli", "__main__", "__init__"}  # what may touch aiohttp and ComfyUI


def contract(name_start: str) -> dict:
    return next(c for c in CONFIG["contracts"] if c["name"].startswith(name_start))


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """Run import-linter over the packages under `root` (the working directory goes first on its path)."""
    command = [str(Path(sys.executable).with_name("lint-imports")), "--config", str(root / "pyproject.toml"),
               "--no-cache"]
    return subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=120)


def test_the_layering_contracts_are_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(CONFIG['contracts'])} kept, 0 broken" in result.stdout


def test_the_core_contract_names_every_module_of_the_core():
    """A new core module cannot slip past the contract: each one outside the adapter and the CLI is listed."""
    listed = set(contract("The guard's core")["source_modules"])
    core = {f"tenancy.{p.stem}" for p in (ROOT / "tenancy").iterdir()
            if p.stem not in ADAPTER_AND_ENTRY and (p.suffix == ".py" or (p / "__init__.py").exists())}
    assert core == listed


def test_the_model_contract_names_every_pure_package_of_the_nodes():
    """Under nodes/ a package is ComfyUI glue when its name ends in `_comfy`, and plain torch otherwise."""
    listed = set(contract("Model packages")["source_modules"])
    pure = {f"nodes.{p.name}" for p in (ROOT / "nodes").iterdir()
            if (p / "__init__.py").exists() and not p.name.endswith("_comfy")}
    assert pure == listed


@pytest.mark.parametrize(("module", "line", "broken"), [
    ("tenancy/admission.py", "import aiohttp", "The guard's core"),
    ("tenancy/workflow.py", "from tenancy.comfy import middleware", "The guard's core"),
    ("nodes/sonic/crop.py", "import folder_paths", "Model packages"),
    ("nodes/shared/weights.py", "import comfy.utils", "Model packages"),
    ("nodes/glm_tts/voice.py", "from nodes.glm_tts_comfy import voices", "Model packages"),
    ("nodes/sonic_comfy/nodes.py", "from tenancy import paths", "Nodes reach the guard"),
    ("nodes/glm_tts_comfy/voices.py", "from tenancy.comfy import context", "Nodes reach the guard"),
    ("nodes/shared_comfy/guard.py", "from tenancy import tenant_data", "Nodes reach the guard"),
])
def test_an_import_across_a_layer_breaks_the_suite(tmp_path, module, line, broken):
    for item in ("pyproject.toml", "tenancy", "nodes"):
        source = ROOT / item
        if source.is_dir():
            shutil.copytree(source, tmp_path / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, tmp_path / item)
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{line}  # across a layer\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "1 broken" in result.stdout and module.replace("/", ".").removesuffix(".py") in result.stdout
    assert any(c.startswith(broken) and c.endswith("BROKEN") for c in _contract_lines(result.stdout))


def _contract_lines(report: str) -> list[str]:
    """The report wraps long contract names: join each name with its KEPT/BROKEN verdict (and drop the
    "(1 ignored import)" a contract with `ignore_imports` adds after it)."""
    lines, current = [], ""
    for line in report.splitlines():
        current = f"{current} {line}".strip() if current else line
        verdict = re.sub(r" \(\d+ ignored imports?\)$", "", current)
        if verdict.endswith(("KEPT", "BROKEN")):
            lines.append(verdict)
            current = ""
        elif not line.strip():
            current = ""
    return lines

