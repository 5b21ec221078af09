"""aiohttp plumbing the surfaces share: refusals as responses, same-origin checks, and rewriting the body
or the answer of a request before/after ComfyUI's own handler sees it."""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from ..refusal import Refusal


def refusal_response(refusal: Refusal) -> web.Response:
    headers = {}
    if refusal.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(refusal.retry_after)))
    return web.json_response(refusal.body(), status=refusal.status, headers=headers)


def wants_html(request: web.Request) -> bool:
    return request.method == "GET" and "text/html" in request.headers.get("Accept", "") \
        and request.headers.get("Upgrade", "").lower() != "websocket"


def same_origin(request: web.Request) -> bool:
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site in ("same-origin", "none")
    origin = request.headers.get("Origin")
    if not origin or origin == "null":
        return False
    return urlsplit(origin).netloc == request.host


def safe_next(value: str | None) -> str:
    """Only a path on this site: never another host (`//x`, `/\\x`, `https://x`)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value or not value.isprintable():
        return "/"
    return value


async def json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except (ValueError, UnicodeDecodeError):
        raise Refusal(400, "invalid_json", "the body is not valid JSON") from None


def replace_json_body(request: web.Request, body: Any) -> None:
    """ComfyUI's handler reads the body with `request.json()`, which uses aiohttp's cached bytes."""
    request._read_bytes = json.dumps(body).encode()


def replace_form(request: web.Request, fields: MultiDict) -> None:
    """ComfyUI's upload handlers read `request.post()`, which returns aiohttp's cached form."""
    request._post = MultiDictProxy(fields)


def check_body_hooks() -> None:
    """The two private aiohttp attributes above must still exist; fail closed at start-up otherwise."""
    from aiohttp.test_utils import make_mocked_request

    probe = make_mocked_request("POST", "/")
    for name in ("_read_bytes", "_post"):
        if not hasattr(probe, name):
            raise RuntimeError(f"aiohttp no longer has Request.{name}; the guard cannot rewrite bodies")


def answer_json(response: web.StreamResponse) -> Any | None:
    """The JSON a ComfyUI handler answered, or None when it answered something else."""
    if not isinstance(response, web.Response) or response.content_type != "application/json" \
            or response.body is None:
        return None
    return json.loads(response.body)


def with_field(response: web.StreamResponse, key: str, value: Any) -> web.StreamResponse:
    """A JSON object answer with one more field, spliced into its text rather than parsed and written again;
    any other answer as it is."""
    if not isinstance(response, web.Response) or response.content_type != "application/json" \
            or not isinstance(response.body, bytes):
        return response
    text = response.body.strip()
    if not (text.startswith(b"{") and text.endswith(b"}")):
        return response
    head = text[:-1].rstrip()
    field = json.dumps({key: value})[1:-1].encode()
    response.body = head + (b"" if head == b"{" else b", ") + field + b"}"
    return response


def json_like(response: web.StreamResponse, data: Any) -> web.Response:
    return web.json_response(data, status=response.status)
