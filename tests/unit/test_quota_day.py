"""The day a reservation is charged to, in the plan's time zone, across DST changes and midnights that do not
exist (the answer is remembered per zone, so asking in any order must give the calendar's answer)."""

from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

from tenancy.admission import quota_day

ZONES = ["UTC", "Europe/Berlin", "America/Havana", "Asia/Beirut", "Australia/Lord_Howe", "Asia/Kathmandu",
         "America/Santiago", "Pacific/Apia", "America/St_Johns"]


def calendar_day(now: float, zone: str) -> str:
    return dt.datetime.fromtimestamp(now, ZoneInfo(zone)).strftime("%Y-%m-%d")


def test_quota_day_matches_the_calendar_forwards_backwards_and_around_midnight():
    rng = random.Random(7)
    now = 1_700_000_000.0
    for _ in range(50_000):
        now += rng.choice([-86_400, -1, 0.25, 1, 59, 3_600, 7_200, 43_000])
        zone = rng.choice(ZONES)
        assert quota_day(now, zone) == calendar_day(now, zone), (now, zone)


def test_the_day_turns_at_local_midnight():
    berlin_midnight = dt.datetime(2026, 11, 23, tzinfo=ZoneInfo("Europe/Berlin")).timestamp()
    assert quota_day(berlin_midnight - 0.001, "Europe/Berlin") == "2026-11-22"
    assert quota_day(berlin_midnight, "Europe/Berlin") == "2026-11-23"
    assert quota_day(berlin_midnight, "UTC") == "2026-11-22"  # 23:00 UTC
