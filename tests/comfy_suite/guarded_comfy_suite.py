"""A pytest plugin that runs ComfyUI's own server test suite (its `tests/execution`) through the tenancy guard,
unchanged: only an Authorization header is added, while a second tenant keeps submitting prompts.

Run it from the ComfyUI root with `make comfy-suite` (see the Makefile). The suite starts `python main.py` itself;
the plugin adds to that command what a guarded installation needs (this interpreter, a base directory with the
plugin linked and seeded tenants, a free port) and gives every urllib request and websocket connection of the
suite's own client the suite tenant's API key. Its own name is not `tests.*`: ComfyUI's `tests` package is
the one imported here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path

import websocket

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))  # after ComfyUI's root: `tests` and `nodes` stay ComfyUI's

from tenancy.installation import PLUGIN_LINK_NAME  # noqa: E402

SUITE_TENANT, OTHER_TENANT = "light", "b"  # seeded tenants (tests/harness/tenants.py): unthrottled, no quota cap
# GUARDED_SUITE_OTHER_TENANT=0: the suite's tenant alone (tells what the guard changes from what sharing does)
WITH_OTHER_TENANT = os.environ.get("GUARDED_SUITE_OTHER_TENANT", "1") != "0"
OTHER_PROMPT_WAIT_S = 60


def pytest_configure(config) -> None:
    base = Path(tempfile.mkdtemp(prefix="guarded-comfy-suite-"))
    keys, tenancy_config = _seed(base)
    config.option.port = _free_port()
    config.option.output_dir = str(base / "samples")
    config.option.skip_timing_checks = True  # two tenants share one worker: the suite's timings do not hold
    _add_authorization(f"Bearer {keys[SUITE_TENANT]}")
    other = OtherTenant(f"http://127.0.0.1:{config.option.port}", f"Bearer {keys[OTHER_TENANT]}")
    _guard_server_starts(base, tenancy_config, other)
    config.guarded_comfy_suite = other


def pytest_unconfigure(config) -> None:
    other = getattr(config, "guarded_comfy_suite", None)
    if other is not None:
        other.stop()


def pytest_terminal_summary(terminalreporter, config) -> None:
    other = getattr(config, "guarded_comfy_suite", None)
    if other is not None:
        terminalreporter.write_line(f"guarded suite: the other tenant's prompts: {other.finished} finished, "
                                    f"{other.refused} refused, {other.unreachable} while no server answered")


def _seed(base: Path) -> tuple[dict, Path]:
    """The test installation's tenants, seeded as the project's own tests seed them."""
    spec = importlib.util.spec_from_file_location("tenancy_test_tenants", REPO / "tests" / "harness" / "tenants.py")
    tenants = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tenants)
    seeded = tenants.seed(base)
    (base / "custom_nodes").mkdir(exist_ok=True)
    (base / "custom_nodes" / PLUGIN_LINK_NAME).symlink_to(REPO, target_is_directory=True)
    return seeded.keys, seeded.config_path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _add_authorization(authorization: str) -> None:
    opener = urllib.request.build_opener()
    opener.addheaders.append(("Authorization", authorization))
    urllib.request.install_opener(opener)
    connect = websocket.WebSocket.connect

    def connect_with_header(self, url, **options):
        headers = [*(options.pop("header", None) or []), f"Authorization: {authorization}"]
        return connect(self, url, header=headers, **options)

    websocket.WebSocket.connect = connect_with_header


def _guard_server_starts(base: Path, tenancy_config: Path, other: OtherTenant) -> None:
    """The suite's `python main.py ...` gets this interpreter, the guarded base directory and its config."""
    popen = subprocess.Popen

    class GuardedPopen(popen):
        def __init__(self, args, *rest, **options):
            if isinstance(args, list) and args[:2] == ["python", "main.py"]:
                args = [sys.executable, "main.py", "--base-directory", str(base), "--database-url",
                        "sqlite:///:memory:", *args[2:]]
                options["env"] = {**(options.get("env") or os.environ), "TENANCY_CONFIG": str(tenancy_config),
                                  "TENANCY_REQUIRE_GUARD": "1"}
                if WITH_OTHER_TENANT:
                    other.start()
            super().__init__(args, *rest, **options)

    subprocess.Popen = GuardedPopen


class OtherTenant:
    """Queues one small prompt after another as a second tenant (its own workflow, its own outputs), whichever
    server the suite has running: the suite's tenant shares the queue, the history and the websocket server."""

    def __init__(self, url: str, authorization: str) -> None:
        self.url = url
        self.headers = {"Authorization": authorization, "Content-Type": "application/json"}
        self.finished = self.refused = self.unreachable = 0
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="other-tenant", daemon=True)
            self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        if self.thread is not None:
            self.thread.join(timeout=OTHER_PROMPT_WAIT_S)

    def _run(self) -> None:
        while not self.stopped.is_set():
            try:
                self._one_prompt()
            except (urllib.error.URLError, ConnectionError, OSError):
                self.unreachable += 1
                self.stopped.wait(1.0)  # a server of the suite is starting or stopping: ask again shortly

    def _one_prompt(self) -> None:
        color = random.randrange(0x1000000)  # a new workflow each time: ComfyUI's cache would skip a repeat
        prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1,
                                                               "color": color}},
                  "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "other"}}}
        try:
            answer = self._call("POST", "/prompt", {"prompt": prompt})
        except urllib.error.HTTPError:
            self.refused += 1
            self.stopped.wait(1.0)
            return
        prompt_id = answer["prompt_id"]
        for _ in range(int(OTHER_PROMPT_WAIT_S / 0.2)):  # until it ran (then queue the next one)
            if self.stopped.wait(0.2) or self._call("GET", f"/history/{prompt_id}"):
                break
        self.finished += 1

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, headers=self.headers, method=method)
        # its own opener: the installed one carries the suite tenant's header
        with urllib.request.build_opener().open(request, timeout=30) as response:
            return json.loads(response.read())
