"""The admission decisions the adapter and the stores call: the quota rule, the refusal a client reads, the
charge of a finished prompt and of a lost one."""

from __future__ import annotations

import pytest

from tenancy.admission import quota_reason, reap_charge, refusal_for, settlement
from tenancy.records import PROMPT_ID_TAKEN, QuotaDecision, Reservation


@pytest.mark.parametrize(("used", "held", "active", "seconds", "limit", "max_active", "reason"), [
    (0, 0, 0, 10, 60, 2, "ok"),
    (40, 10, 1, 10, 60, 2, "ok"),                    # exactly at the limit still fits
    (40, 10, 1, 10.5, 60, 2, "quota_exceeded"),
    (0, 0, 2, 1, 60, 2, "concurrency_limit"),
    (100, 0, 2, 1, 60, 2, "concurrency_limit"),      # the cap is told before the quota
    (1e9, 1e9, 0, 1e9, -1, 2, "ok"),                 # a negative limit is unlimited
    (0, 0, 0, 1, 0, 2, "quota_exceeded"),            # a zero limit admits nothing that produces media
    (0, 0, 0, 0, 0, 2, "ok"),
])
def test_the_quota_rule(used, held, active, seconds, limit, max_active, reason):
    assert quota_reason(used, held, active, seconds, limit, max_active) == reason


def test_a_quota_refusal_says_what_is_needed_and_left():
    refusal = refusal_for(QuotaDecision(False, "quota_exceeded", 50.0, 8.0, 60.0, 1), 4.5)
    assert (refusal.status, refusal.reason, refusal.retry_after) == (429, "quota_exceeded", None)
    assert refusal.extra == {"remaining_seconds": 2.0, "needed_seconds": 4.5, "used_seconds": 50.0,
                             "held_seconds": 8.0, "daily_seconds": 60.0}
    assert "4.5 s" in refusal.message and "2 s are left" in refusal.message


def test_a_cap_refusal_counts_the_active_prompts_and_asks_to_retry():
    refusal = refusal_for(QuotaDecision(False, "concurrency_limit", 0, 0, 60, 3), 1.0)
    assert (refusal.status, refusal.reason, refusal.retry_after, refusal.extra) == \
        (429, "concurrency_limit", 5, {"active": 3})


def test_rate_and_taken_refusals_tell_nothing_of_usage():
    rate = refusal_for(QuotaDecision.rate_limited(1.25, 60), 1.0)
    assert (rate.status, rate.reason, rate.retry_after, rate.extra) == (429, "rate_limited", 1.25, {})
    taken = refusal_for(QuotaDecision.taken(60), 1.0)
    assert (taken.status, taken.reason, taken.extra) == (409, PROMPT_ID_TAKEN, {})


@pytest.mark.parametrize(("event", "timed_out", "policy", "expected"), [
    ("execution_success", False, "elapsed", ("success", None)),
    ("execution_success", True, "elapsed", ("success", None)),   # the interrupt came too late: it finished
    ("execution_error", False, "elapsed", ("failed", 7.5)),
    ("execution_error", False, "refund", ("failed", 0.0)),
    ("execution_interrupted", False, "elapsed", ("interrupted", 7.5)),
    ("execution_interrupted", True, "elapsed", ("timeout", 7.5)),
    ("execution_interrupted", True, "refund", ("timeout", 0.0)),
    ("execution_error", True, "elapsed", ("timeout", 7.5)),
])
def test_a_finished_prompt_is_charged_by_its_outcome(event, timed_out, policy, expected):
    assert settlement(event, timed_out, 7.5, policy) == expected


def test_a_lost_hold_is_refunded_unless_it_started_and_the_policy_charges():
    hold = Reservation("t", "p", 12.0, "2026-12-06", 0.0, "i", started=None)
    assert reap_charge(hold, "charge_reservation") == (0.0, "reaped")
    started = Reservation("t", "p", 12.0, "2026-12-06", 0.0, "i", started=5.0)
    assert reap_charge(started, "charge_reservation") == (12.0, "lost_charged")
    assert reap_charge(started, "refund") == (0.0, "lost_refunded")
