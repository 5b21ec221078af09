"""aiohttp plumbing the middleware, the surfaces and the API share: what the middleware leaves on a request,
refusals as responses, same-origin checks, and rewriting the body or the answer of a request before/after
ComfyUI's own handler sees it."""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy

from ..records import Principal
from ..refusal import Refusal

# What the middleware leaves on a request for the handlers after it:
PRINCIPAL_KEY = "tenancy.principal"
AUDITED = "tenancy.audited"  # set when a surface wrote the request's audit line itself
STALE = "tenancy.stale"  # set when the caller was recognised from memory because the store is unreachable

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]  # ComfyUI's handler of a route
Surface = Callable[[web.Request, Handler, Principal], Awaitable[web.StreamResponse]]  # what confines a route


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
    """ComfyUI's handlers read the body with `request.json()`: it answers the rewritten object itself, with no
    text written for ComfyUI to parse again; `read()` and `text()` serialise it only when someone asks."""

    async def rewritten_json(**_options) -> Any:
        return body

    async def rewritten_bytes() -> bytes:
        request._read_bytes = json.dumps(body).encode()
        return request._read_bytes

    request.json, request.read = rewritten_json, rewritten_bytes


URL_READINGS = ("rel_url", "url", "query", "query_string", "path_qs")  # aiohttp caches each on first reading


def replace_query(request: web.Request, query: dict[str, str]) -> None:
    """ComfyUI's handlers read `request.rel_url.query`: the request's URL is rewritten in place (a clone of the
    request cost more than the rest of the guard's work on /view); cached readings of the old URL go."""
    request._rel_url = request._rel_url.with_query(query)
    for name in URL_READINGS:
        request._cache.pop(name, None)


def replace_header(request: web.Request, name: str, value: str | None) -> None:
    """One header set to `value` (removed when None), for ComfyUI's handlers and for clones of the request:
    the request's header view and its parsed message are replaced in place (a clone costs more)."""
    headers = CIMultiDict(request.headers)
    headers.popall(name, None)
    if value is not None:
        headers[name] = value
    proxy = CIMultiDictProxy(headers)
    raw = tuple((k.encode("utf-8"), v.encode("utf-8")) for k, v in headers.items())
    request._message = request._message._replace(headers=proxy, raw_headers=raw)
    request._headers = proxy
    request._cache.pop("headers", None)  # aiohttp caches the header view on first reading


def replace_form(request: web.Request, fields: MultiDict) -> None:
    """ComfyUI's upload handlers read `request.post()`, which returns aiohttp's cached form."""
    request._post = MultiDictProxy(fields)


def check_request_hooks() -> None:
    """The rewrites above lean on aiohttp's request internals: fail closed at start-up when one no longer takes,
    rather than let ComfyUI read what the caller sent."""
    from aiohttp.test_utils import make_mocked_request

    probe = make_mocked_request("POST", "/view?filename=sent&type=input")
    headed = make_mocked_request("GET", "/userdata", headers={"comfy-user": "sent"})
    headed.headers  # noqa: B018 (read before the rewrite, as the guard's own checks do, so cached by aiohttp)
    for reading in ("rel_url", "url", "query", "query_string", "path_qs"):  # read before the rewrite, as the
        getattr(probe, reading)  # guard's own checks do, so cached by aiohttp (named here, not from URL_READINGS)
    replace_query(probe, {"filename": "rewritten"})
    replace_json_body(probe, {"rewritten": True})
    replace_form(probe, MultiDict(rewritten="yes"))
    replace_header(headed, "comfy-user", "rewritten")
    problems = [what for what, holds in (
        ("Request.rel_url", probe.rel_url.query.get("filename") == "rewritten"),
        ("Request.query", probe.query.get("filename") == "rewritten" and "type" not in probe.query),
        ("Request.url", probe.url.query.get("filename") == "rewritten"),
        ("Request.path_qs", probe.path_qs == "/view?filename=rewritten"),
        ("Request.query_string", probe.query_string == "filename=rewritten"),
        ("Request.json", _at_once(probe.json()) == {"rewritten": True}),
        ("Request.text", _at_once(probe.text()) == '{"rewritten": true}'),
        ("Request.post", _at_once(probe.post()).get("rewritten") == "yes"),
        ("Request.headers", headed.headers.getall("comfy-user") == ["rewritten"]
         and headed.clone().headers.getall("comfy-user") == ["rewritten"])) if not holds]
    if problems:
        raise RuntimeError(f"aiohttp no longer lets the guard rewrite {', '.join(problems)}")


def _at_once(coroutine) -> Any:
    """The result of a coroutine that never waits (start-up may be inside a running event loop)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("the probe request waited for a body it should already have")


def answer_json(response: web.StreamResponse) -> Any | None:
    """The JSON a ComfyUI handler answered, or None when it answered something else."""
    if not isinstance(response, web.Response) or response.content_type != "application/json" \
            or response.body is None:
        return None
    return json.loads(response.body)


async def tenant_copy(request: web.Request, handler: Handler,
                      principal: Principal) -> tuple[web.StreamResponse, dict | None]:
    """ComfyUI's answer, and its JSON object when it is a tenant's to rewrite (None: operators, and answers that
    are no JSON object, get the answer as it is)."""
    response = await handler(request)
    answer = answer_json(response)
    if principal.is_admin or not isinstance(answer, dict):
        return response, None
    return response, answer


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
