"""The package is importable outside ComfyUI without pulling ComfyUI in."""

from __future__ import annotations

import subprocess
import sys

from tenancy.installation import PLUGIN_ROOT


def test_importing_the_package_outside_comfyui_imports_no_comfyui_module(tmp_path):
    probe = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('plugin', {str(PLUGIN_ROOT / '__init__.py')!r},"
        f" submodule_search_locations=[{str(PLUGIN_ROOT)!r}])\n"
        "module = importlib.util.module_from_spec(spec); sys.modules['plugin'] = module\n"
        "spec.loader.exec_module(module)\n"
        "assert module.WEB_DIRECTORY == 'web' and isinstance(module.NODE_CLASS_MAPPINGS, dict)\n"
        "leaked = sorted(m for m in ('server', 'folder_paths', 'comfy', 'execution', 'nodes') if m in sys.modules)\n"
        "print(leaked)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"

