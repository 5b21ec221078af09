"""The guard rewrites a request in place before ComfyUI's handler reads it: the query of /view, the JSON of
/prompt. What the handler reads must be the rewrite, whichever reading of the request it uses."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import make_mocked_request

from tenancy.comfy import http


def test_a_rewritten_query_replaces_every_reading_of_the_url_even_those_already_made():
    request = make_mocked_request("GET", "/view?filename=x.png&subfolder=&type=input")
    before = (request.rel_url, request.query, request.url, request.path_qs, request.query_string)
    http.replace_query(request, {"filename": "x.png", "subfolder": "tenants/acme", "type": "input"})
    assert before[0].query["subfolder"] == ""  # the readings above were cached by aiohttp
    for query in (request.rel_url.query, request.query, request.url.query):
        assert query["subfolder"] == "tenants/acme"
    assert request.path_qs == "/view?filename=x.png&subfolder=tenants/acme&type=input"
    assert request.query_string == "filename=x.png&subfolder=tenants/acme&type=input"
    assert request.path == "/view"


def test_a_rewritten_json_body_is_handed_over_as_the_object_and_serialised_only_when_read_as_text():
    request = make_mocked_request("POST", "/prompt")
    body = {"prompt": {"1": {"class_type": "EmptyImage", "inputs": {}}}, "number": 3.5}

    async def read():
        return await request.json(), await request.text(), await request.read()

    http.replace_json_body(request, body)
    as_json, as_text, as_bytes = asyncio.run(read())
    assert as_json is body
    assert as_text == '{"prompt": {"1": {"class_type": "EmptyImage", "inputs": {}}}, "number": 3.5}'
    assert as_bytes == as_text.encode()


def test_the_start_up_check_passes_on_this_aiohttp_and_fails_closed_when_a_rewrite_does_not_take(monkeypatch):
    http.check_request_hooks()
    monkeypatch.setattr(http, "URL_READINGS", ("url", "query"))  # a reading left cached: ComfyUI would see the old
    with pytest.raises(RuntimeError) as failure:
        http.check_request_hooks()
    assert "Request.rel_url" in str(failure.value) and "Request.path_qs" in str(failure.value)
