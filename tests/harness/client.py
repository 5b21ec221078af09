"""An HTTP client for a running ComfyUI: post API-format workflows, upload files, wait for history."""

from __future__ import annotations

import json
import time
from pathlib import Path

import requests
import websocket


class ComfyClient:
    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.session.get(self.url + path, timeout=30, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.session.post(self.url + path, timeout=30, **kwargs)

    def delete(self, path: str, **kwargs) -> requests.Response:
        return self.session.delete(self.url + path, timeout=30, **kwargs)

    def upload_image(self, path: Path, name: str | None = None, **fields: str) -> requests.Response:
        with Path(path).open("rb") as handle:
            return self.post("/upload/image", files={"image": (name or Path(path).name, handle)}, data=fields)

    def queue(self, workflow: dict, **body) -> requests.Response:
        return self.post("/prompt", json={"prompt": workflow, **body})

    def run(self, workflow: dict, timeout: float = 120, **body) -> dict:
        """Queue a workflow and wait for its history entry; fails with ComfyUI's answer if refused."""
        response = self.queue(workflow, **body)
        assert response.status_code == 200, response.text
        return self.wait_history(response.json()["prompt_id"], timeout)

    def websocket(self, client_id: str) -> websocket.WebSocket:
        """ComfyUI's websocket as this caller (its first message, `status`, carries the sid it was given)."""
        return websocket.create_connection(f"{self.url.replace('http', 'ws', 1)}/ws?clientId={client_id}",
                                           header=[f"Authorization: {self.session.headers['Authorization']}"])

    def wait_history(self, prompt_id: str, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.get(f"/history/{prompt_id}").json().get(prompt_id)
            if entry:
                return entry
            time.sleep(0.1)
        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout}s")


def text_messages(socket: websocket.WebSocket, seconds: float) -> list[dict]:
    """Every text message the websocket receives within `seconds` (binary previews skipped)."""
    received, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        socket.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            message = socket.recv()
        except websocket.WebSocketTimeoutException:
            break
        if isinstance(message, str):
            received.append(json.loads(message))
    return received
