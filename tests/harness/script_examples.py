"""ComfyUI's own API script examples (`script_examples/` of the ComfyUI in use), loaded and run with their own code:
from outside only an Authorization header is added (an installed urllib opener, a websocket connect that passes
the header) and, for the example that names no server address of its own, its fixed address is pointed at the
instance under test."""

from __future__ import annotations

import ast
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import websocket

from .comfyui import comfyui_root

ROOT = comfyui_root()
EXAMPLES = ROOT / "script_examples" if ROOT else Path("/nonexistent")
# A recv that waits this long without a message fails the test instead of hanging it (the examples wait for
# ever for a message that names their prompt id)
SOCKET_TIMEOUT_S = 60
BUILT_IN_ADDRESS = "127.0.0.1:8188"  # basic_api_example.py posts there, written into its function


def example_nodes() -> tuple[tuple[str, Path], ...]:
    """ComfyUI's own example node (SaveImageWebsocket), which websockets_api_example_ws_images.py needs, as a
    plugin entry for `ComfyUI.plugins` (an unmodified third-party node behind the guard); none where this ComfyUI
    lacks it."""
    node = ROOT / "custom_nodes" / "websocket_image_save.py" if ROOT else None
    return ((node.name, node),) if node is not None and node.is_file() else ()


def example(name: str) -> dict:
    """The imports, settings and functions of one of ComfyUI's script examples, executed as they are written;
    only its closing lines are left out (they queue a workflow that needs an SD checkpoint, at import)."""
    path = EXAMPLES / name
    if not path.is_file():
        pytest.skip(f"{path} is not in this ComfyUI")
    tree = ast.parse(path.read_text())
    kept = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef))
            or (isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)]
                in (["server_address"], ["client_id"]))]
    namespace: dict = {"__name__": f"comfyui_example_{path.stem}"}
    exec(compile(ast.Module(body=kept, type_ignores=[]), str(path), "exec"), namespace)
    return namespace


class _BuiltInAddress(urllib.request.BaseHandler):
    """Sends a request for ComfyUI's default address to the instance under test (nothing else changes)."""

    def __init__(self, address: str) -> None:
        self.address = address

    def http_request(self, request: urllib.request.Request) -> urllib.request.Request:
        if request.host == BUILT_IN_ADDRESS:
            parts = urlsplit(request.full_url)
            request.full_url = parts._replace(netloc=self.address).geturl()
        return request


@contextmanager
def as_caller(api_key: str, address: str, monkeypatch) -> Iterator[str]:
    """Every urllib request and websocket connection of this process carries the key (urllib's opener sends it as
    an unredirected header: never to the presigned URL a /view may redirect to); yields `address` (host:port)."""
    authorization = f"Bearer {api_key}"
    opener = urllib.request.build_opener(_BuiltInAddress(address))
    opener.addheaders.append(("Authorization", authorization))
    urllib.request.install_opener(opener)
    connect = websocket.WebSocket.connect

    def connect_with_header(self, url, **options):
        return connect(self, url, header=[f"Authorization: {authorization}"], timeout=SOCKET_TIMEOUT_S, **options)

    monkeypatch.setattr(websocket.WebSocket, "connect", connect_with_header)
    try:
        yield address
    finally:
        urllib.request.install_opener(None)


def run_example(module: dict, server_address: str, prompt: dict) -> dict:
    """What a websocket example's own closing lines do, with our workflow in place of its SD one."""
    module["server_address"] = server_address
    ws = module["websocket"].WebSocket()
    ws.connect("ws://{}/ws?clientId={}".format(server_address, module["client_id"]))
    try:
        return module["get_images"](ws, prompt)
    finally:
        ws.close()
