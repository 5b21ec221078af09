"""Session-wide real servers: one ComfyUI with the plugin loaded, one redis-server."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness.client import ComfyClient
from tests.harness.comfyui import ComfyUI
from tests.harness.redis import RedisServer

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def comfyui(tmp_path_factory) -> ComfyUI:
    base = tmp_path_factory.mktemp("comfy-base")
    server = ComfyUI(base, env={"TENANCY_REQUIRE_GUARD": "1"}).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def client(comfyui) -> ComfyClient:
    return ComfyClient(comfyui.url)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> RedisServer:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()
