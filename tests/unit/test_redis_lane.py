"""The Redis lane's borrowings from redis-py: its private mapping of error replies to exception classes (hence
`redis<9` in the requirements; this fails first when it moves) and which failures mean the store is down."""

from __future__ import annotations

import asyncio

import hiredis
from redis.exceptions import NoScriptError, ReadOnlyError, ResponseError

from tenancy.store.protocol import StoreUnavailable
from tenancy.store.redis_lane import BaseParser, failure


def test_error_replies_become_redis_py_exceptions():
    reader = hiredis.Reader(encoding="utf-8", replyError=BaseParser.parse_error)
    reader.feed(b"-NOSCRIPT No matching script. Please use EVAL.\r\n-READONLY You can't write\r\n-ERR wrong\r\n")
    noscript, readonly, other = reader.gets(), reader.gets(), reader.gets()
    assert isinstance(noscript, NoScriptError) and isinstance(readonly, ReadOnlyError)
    assert type(other) is ResponseError and str(other) == "wrong"


def test_a_store_that_cannot_answer_or_write_is_unavailable_and_other_errors_stay():
    for down in (ReadOnlyError("replica"), ResponseError("MISCONF no disk"), asyncio.TimeoutError(), OSError(111)):
        assert isinstance(failure("redis://x:6379/0", down), StoreUnavailable)
    wrong = ResponseError("ERR syntax")
    assert failure("redis://x:6379/0", wrong) is wrong
