"""What operators and tenants read of usage (a day's row, the ledger CSV, a day in a query), a key's state, and
the refusals the core's own errors become."""

from __future__ import annotations

import pytest

from tenancy.accounts import AdminError
from tenancy.paths import PathRefused
from tenancy.records import ApiKey, LedgerEntry, QuotaDecision, Usage
from tenancy.usage import ledger_csv, parse_day, usage_row


def test_a_usage_row_says_what_is_left_by_the_quota_rule():
    used = Usage(used=42.5, held=10.0, active=2)
    assert usage_row("2026-12-06", used, 150.0) == {"day": "2026-12-06", "used_seconds": 42.5, "held_seconds": 10.0,
                                                    "daily_seconds": 150.0, "remaining_seconds": 97.5}
    assert usage_row("d", used, 50.0)["remaining_seconds"] == 0.0  # never below zero
    assert usage_row("d", used, -1)["remaining_seconds"] == -1  # unlimited
    assert usage_row("d", used, None)["remaining_seconds"] is None  # a plan that is not configured
    decision = QuotaDecision(False, "quota_exceeded", 42.5, 10.0, 150.0, 2)
    assert decision.remaining == usage_row("d", used, 150.0)["remaining_seconds"]


def test_the_ledger_csv_has_utc_times_and_millisecond_seconds():
    entries = [LedgerEntry(0.0, "acme", "p1", "reserve", 5.0, "1970-01-01"),
               LedgerEntry(86400.5, "acme", "p1", "settle", 4.12345, "1970-01-01", "success")]
    assert ledger_csv(entries).splitlines() == [
        "time_utc,tenant,prompt_id,kind,seconds,day,outcome",
        "1970-01-01T00:00:00+00:00,acme,p1,reserve,5.000,1970-01-01,",
        "1970-01-02T00:00:00+00:00,acme,p1,settle,4.123,1970-01-01,success"]


def test_a_day_is_the_start_of_that_utc_day():
    assert parse_day("1970-01-02") == 86400.0
    for bad in ("2026-13-01", "yesterday", ""):
        with pytest.raises(ValueError, match="use YYYY-MM-DD"):
            parse_day(bad)


def test_a_key_is_revoked_before_it_is_expired():
    key = ApiKey("k", "acme", "member", "ci", "h", created=0.0, expires=100.0)
    assert [key.state(50.0), key.state(150.0)] == ["active", "expired"]
    assert ApiKey("k", None, "admin", "ops", "h", created=0.0).state(1e12) == "active"
    assert ApiKey("k", "acme", "member", "ci", "h", 0.0, 100.0, revoked=True).state(50.0) == "revoked"


def test_core_errors_become_refusals():
    path = PathRefused("resolves outside the tenant's folder").to_refusal()
    assert (path.status, path.reason, path.message) == (403, "path_outside_tenant",
                                                        "resolves outside the tenant's folder")
    admin = AdminError("no tenant x").to_refusal()
    assert (admin.status, admin.reason, admin.message) == (400, "invalid_request", "no tenant x")
