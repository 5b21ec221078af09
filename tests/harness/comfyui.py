"""A real ComfyUI process with the plugin linked into an isolated base directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tenancy.installation import PLUGIN_LINK_NAME, PLUGIN_ROOT, ComfyHome, ComfyNotFound, locate

from .ports import free_port

START_TIMEOUT_S = 180
TEST_NODES = Path(__file__).resolve().parents[1] / "comfy_test_nodes"


class ComfyUI:
    """Start with `start()`, stop by PID with `stop()`; the log lands in `<base>/comfyui.log`."""

    def __init__(self, base: Path, config: Path | None = None, env: dict | None = None,
                 extra_args: tuple[str, ...] = (), port: int | None = None, with_plugin: bool = True) -> None:
        self.base = Path(base)
        self.config = config
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env or {}
        self.extra_args = extra_args
        self.plugins = ((PLUGIN_LINK_NAME, PLUGIN_ROOT), ("comfy_test_nodes", TEST_NODES)) if with_plugin else ()
        self.home: ComfyHome = locate(None, self.base)
        self.log_path = self.base / "comfyui.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> ComfyUI:
        (self.base / "custom_nodes").mkdir(parents=True, exist_ok=True)
        for name, target in self.plugins:
            link = self.base / "custom_nodes" / name
            if not link.exists():
                link.symlink_to(target, target_is_directory=True)
        env = dict(os.environ, **self.env)
        if self.config:
            env["TENANCY_CONFIG"] = str(self.config)
        command = self.home.command("127.0.0.1", self.port, "--cpu", "--database-url", "sqlite:///:memory:",
                                    *self.extra_args, python=sys.executable)
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(command, cwd=self.home.root, env=env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                requests.get(self.url + "/", timeout=2)
                return
            except requests.ConnectionError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"ComfyUI did not answer within {START_TIMEOUT_S}s:\n{self.log_tail()}")

    def audit_text(self, *containing: str, timeout: float = 5.0) -> str:
        """The audit log, once one of its lines contains all of `containing` (a background thread writes the
        lines a fraction of a second after the decisions: wait for the one the test is about, not any alike)."""
        path = self.base / "user" / "tenancy" / "audit.log"
        deadline = time.monotonic() + timeout
        while True:
            text = path.read_text() if path.exists() else ""
            if _line_with(text, containing) or time.monotonic() > deadline:
                return text
            time.sleep(0.05)

    def audit_line(self, *containing: str, timeout: float = 5.0) -> str:
        """The first audit line that contains all of `containing`; "" when none came within `timeout`."""
        return _line_with(self.audit_text(*containing, timeout=timeout), containing)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self) -> int | None:
        if not self.process or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        os.kill(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            return self.process.wait()

    def kill(self) -> None:
        """kill -9, as a crash would."""
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()


def _line_with(text: str, parts: tuple[str, ...]) -> str:
    return next((line for line in text.splitlines() if all(part in line for part in parts)), "")


def comfyui_root() -> Path | None:
    """$COMFYUI_DIR when set (the newer ComfyUI run), else the dev checkout: the one the server tests start;
    None when there is none (tests that import from ComfyUI itself are skipped then)."""
    try:
        return locate().root
    except ComfyNotFound:
        return None
