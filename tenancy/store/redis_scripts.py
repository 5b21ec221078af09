"""The Lua scripts of `lua/` on the store's lane: every admission decision (reserve, settle, start, GCRA rate
limit) and the refresh-token rotation.

A script is loaded once with SCRIPT LOAD and then called by EVALSHA, packed in RESP ahead of time (loaded again
after NOSCRIPT, e.g. when the server restarted). `Scripts.run` also sends the admission index's SADD ahead of a
tenant's first reserve on a connection, in the same round trip (see redis.py on Redis Cluster).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from redis.exceptions import NoScriptError

from .redis_lane import Lane, failure, pack, pack_arguments
from .redis_layout import ADMISSION

LUA = Path(__file__).with_name("lua")


class Script:
    """One Lua file, known by its SHA1; loaded on the first NOSCRIPT, then always called by EVALSHA."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.source = (LUA / f"{name}.lua").read_text()
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()
        self.load = pack([("SCRIPT", "LOAD", self.source)])
        self.evalsha = pack_arguments(("EVALSHA", self.sha))  # the same for every call

    def call(self, keys: list[str], args: list) -> bytes:
        """EVALSHA with these keys and arguments, in RESP."""
        return b"*%d\r\n" % (3 + len(keys) + len(args)) + self.evalsha + pack_arguments((len(keys), *keys, *args))


RESERVE, SETTLE, START, GCRA, USE_REFRESH = (Script(n) for n in ("reserve", "settle", "start", "gcra", "use_refresh"))


class Scripts:
    """Runs packed script calls on the lane, remembering which tenants this connection added to the index."""

    def __init__(self, lane: Lane) -> None:
        self.lane = lane
        self._listed: tuple[object, set[str]] = (None, set())  # (connection, tenants it added to tn:admission)

    async def run(self, script: Script, packed: bytes, listing: str = ""):
        """A packed `script.call`, loading the script on NOSCRIPT. `listing`: a tenant to add to the admission index
        in the same round trip, ahead of the script, unless this connection already did."""
        try:
            for _attempt in range(2):
                wire = self.lane.wire
                if wire is None or wire.closed is not None:
                    wire = await self.lane.open()
                commands: tuple = ()
                if listing:
                    if self._listed[0] is not wire:  # a new connection may reach a new (restarted) server
                        self._listed = (wire, set())
                    if listing not in self._listed[1]:
                        commands = (("SADD", ADMISSION, listing),)
                replies = await wire.send(pack(commands) + packed if commands else packed, len(commands) + 1)
                for reply in replies:
                    if isinstance(reply, Exception) and not isinstance(reply, NoScriptError):
                        raise reply
                if listing and self._listed[0] is wire:
                    self._listed[1].add(listing)
                if not isinstance(replies[-1], NoScriptError):
                    return replies[-1]
                (loaded,) = await wire.send(script.load, 1)
                if isinstance(loaded, Exception):
                    raise loaded
        except Exception as exc:
            unavailable = failure(self.lane.description, exc)
            if unavailable is exc:
                raise
            raise unavailable from exc
        raise NoScriptError(f"{script.name}.lua is not loaded after SCRIPT LOAD")
