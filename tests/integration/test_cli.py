"""`python -m tenancy init | serve | doctor` against real ComfyUI checkouts and processes."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time

import pytest
import requests
import yaml

from tests.harness.ports import free_port

pytestmark = pytest.mark.comfy


def tenancy(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tenancy", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("command", ["init", "serve", "doctor"])
def test_every_command_has_help(command):
    result = tenancy(command, "--help")
    assert result.returncode == 0
    assert "--config" in result.stdout


def test_init_writes_a_commented_config_and_a_private_secret_once(tmp_path):
    first = tenancy("init", "--base-dir", str(tmp_path))
    assert first.returncode == 0, first.stderr
    folder = tmp_path / "user" / "tenancy"
    text = (folder / "config.yaml").read_text()
    assert text.startswith("# comfyui-tenancy configuration")
    assert yaml.safe_load(text)["store"] == "sqlite:///tenancy.db"
    assert stat.S_IMODE((folder / "jwt.secret").stat().st_mode) == 0o600
    assert (tmp_path / "models" / "sonic").is_dir()
    before = (folder / "jwt.secret").read_text()
    again = tenancy("init", "--base-dir", str(tmp_path))
    assert "nothing to do" in again.stdout
    assert (folder / "jwt.secret").read_text() == before


def test_init_takes_the_store_url(tmp_path):
    tenancy("init", "--base-dir", str(tmp_path), "--store", "redis://127.0.0.1:6390/0")
    assert yaml.safe_load((tmp_path / "user/tenancy/config.yaml").read_text())["store"] == "redis://127.0.0.1:6390/0"


def test_doctor_is_all_green_after_init_on_the_running_instance(comfyui):
    assert tenancy("init", "--base-dir", str(comfyui.base)).returncode == 0
    result = tenancy("doctor", "--base-dir", str(comfyui.base), "--url", comfyui.url)
    assert result.returncode == 0, result.stdout
    assert result.stdout.rstrip().endswith("all green")
    assert "plugin loaded and guard on" in result.stdout


def broken_config(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("auth:\n  access_ttl_s: soon\n")
    return path


def test_doctor_names_the_broken_key_and_the_fix(tmp_path):
    result = tenancy("doctor", "--base-dir", str(tmp_path), "--config", str(broken_config(tmp_path)),
                     "--url", f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert "`auth.access_ttl_s`" in result.stdout
    assert "fix: write a value of type int" in result.stdout


def test_serve_refuses_a_broken_config_naming_the_key(tmp_path):
    result = tenancy("serve", "--base-dir", str(tmp_path), "--config", str(broken_config(tmp_path)),
                     "--port", str(free_port()))
    assert result.returncode == 2
    assert "`auth.access_ttl_s`" in result.stderr
    assert "never runs unguarded" in result.stderr


def test_serve_refuses_to_run_with_the_guard_disabled(tmp_path):
    config = tmp_path / "off.yaml"
    config.write_text("enabled: false\n")
    result = tenancy("serve", "--base-dir", str(tmp_path), "--config", str(config), "--port", str(free_port()))
    assert result.returncode == 2
    assert "only runs guarded" in result.stderr


def test_serve_runs_guarded_and_ctrl_c_stops_it_cleanly(tmp_path):
    port = free_port()
    (tmp_path / "custom_nodes").mkdir()
    process = subprocess.Popen([sys.executable, "-m", "tenancy", "serve", "--base-dir", str(tmp_path),
                                "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/tenancy/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                assert process.poll() is None, process.stdout.read()
                time.sleep(0.5)
        else:
            pytest.fail("serve did not come up")
        os.kill(process.pid, signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert "[tenancy] guard installed" in output
    assert "[tenancy] stopped" in output
    assert "Failed to initialize database" not in output  # its database lives in the base folder's user/
    assert (tmp_path / "user" / "comfyui.db").is_file()
