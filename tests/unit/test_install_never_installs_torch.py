"""install.py and requirements.txt never install torch, torchvision or torchaudio."""

from __future__ import annotations

import json
import subprocess
import sys

import tomllib

from tenancy.installation import PLUGIN_ROOT

TORCH = {"torch", "torchvision", "torchaudio"}


def load_install():
    import importlib.util

    spec = importlib.util.spec_from_file_location("tenancy_install", PLUGIN_ROOT / "install.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_requirements_and_pyproject_name_no_torch_package():
    install = load_install()
    names = {install.requirement_name(line) for line in (PLUGIN_ROOT / "requirements.txt").read_text().splitlines()}
    deps = tomllib.loads((PLUGIN_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not names & TORCH
    assert not {install.requirement_name(d) for d in deps} & TORCH


def test_install_refuses_a_requirements_file_naming_torch(tmp_path):
    bad = tmp_path / "requirements.txt"
    bad.write_text("pyyaml\nTorch_Audio\ntorchaudio>=2 ; python_version>'3'\n")
    result = subprocess.run([sys.executable, str(PLUGIN_ROOT / "install.py"), str(bad)],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "refusing" in result.stdout


def test_install_pins_the_torch_already_installed(tmp_path):
    result = subprocess.run([sys.executable, str(PLUGIN_ROOT / "install.py"), "--dry-run"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    from importlib import metadata

    assert f"torch=={metadata.version('torch')}" in result.stdout


def test_pip_resolves_our_requirements_without_any_torch_package(tmp_path):
    report = tmp_path / "report.json"
    subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "-q",
                    "--report", str(report), "-r", str(PLUGIN_ROOT / "requirements.txt")],
                   check=True, capture_output=True)
    resolved = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert "pyjwt" in resolved
    assert not resolved & TORCH


def test_pyproject_lists_what_requirements_txt_installs():
    """ComfyUI-Manager installs requirements.txt, pip installs pyproject's list: both must agree."""
    requirement_name = load_install().requirement_name
    wanted = {requirement_name(line) for line in (PLUGIN_ROOT / "requirements.txt").read_text().splitlines()} - {None}
    deps = tomllib.loads((PLUGIN_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert {requirement_name(d) for d in deps} == wanted
