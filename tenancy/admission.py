"""Admission decisions as pure functions: how many seconds a prompt will produce, which day it is charged
to, whether the tenant's quota and concurrency admit it (and the refusal when not), the queue number that
shares the GPU fairly between tenants (weighted fair queueing), what a finished prompt is charged, and what a
hold whose result was lost is charged."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from .catalogue import Catalogue
from .records import PROMPT_ID_TAKEN, Principal, QuotaDecision, Reservation
from .refusal import Refusal, rate_limited

# Characters per second of speech, by script: CJK is read per character, everything else per letter.
DEFAULT_SPEAKING_RATE = {"cjk": 4.5, "latin": 14.0}
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]")
LETTER = re.compile(r"[^\W\d_]", re.UNICODE)


def quota_day(now: float, timezone: str) -> str:
    """The calendar day (YYYY-MM-DD) a reservation made at `now` is charged to."""
    start, end, day = _DAYS.get(timezone, (0.0, 0.0, ""))
    if start <= now < end:
        return day
    zone = ZoneInfo(timezone)
    local = dt.datetime.fromtimestamp(now, zone)
    midnight = dt.datetime.combine(local.date(), dt.time(), zone)
    following = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(), zone)
    _DAYS[timezone] = (midnight.timestamp(), following.timestamp(), local.strftime("%Y-%m-%d"))
    return _DAYS[timezone][2]


_DAYS: dict[str, tuple[float, float, str]] = {}  # time zone -> the last day asked for: [start, end) and its name


def speech_seconds(text: str, rates: Mapping[str, float] = DEFAULT_SPEAKING_RATE) -> float:
    cjk = len(CJK.findall(text))
    letters = len(LETTER.findall(text)) - cjk
    return cjk / rates["cjk"] + max(letters, 0) / rates["latin"]


@dataclass(frozen=True)
class EstimateInputs:
    """What the estimate may consult besides the graph: the real length of a file a node loads."""

    file_seconds: Callable[[str, str], float | None] = lambda node_id, input_name: None
    speaking_rate: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_SPEAKING_RATE))
    node_table: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def estimate_seconds(prompt: Mapping[str, Any], catalogue: Catalogue, inputs: EstimateInputs) -> float:
    """Seconds of media the prompt will produce, from each node's declared estimate rule:
    `seconds_input` (capped by the real length of the audio behind `audio_link`), `text_input` (speech at a
    per-script rate), `frames_input` + `fps_input`/`fps`. The config's node table adds rules for other packs."""
    total = 0.0
    for node_id, node in prompt.items():
        if not isinstance(node, Mapping):
            continue
        class_type = node.get("class_type", "")
        spec = catalogue.get(class_type)
        rule = inputs.node_table.get(class_type) or (spec.meta.get("estimate") if spec else None)
        if rule:
            total += _node_seconds(prompt, str(node_id), node.get("inputs") or {}, rule, inputs)
    return round(total, 3)


def _node_seconds(prompt: Mapping, node_id: str, values: Mapping, rule: Mapping, inputs: EstimateInputs) -> float:
    if "seconds_input" in rule:
        seconds = _number(values.get(rule["seconds_input"]))
        link = values.get(rule.get("audio_link", ""))
        if isinstance(link, list) and len(link) == 2:
            source = _file_source(prompt, str(link[0]))
            real = inputs.file_seconds(*source) if source else None
            if real is not None:
                seconds = min(seconds, real) if seconds > 0 else real
        return max(seconds, 0.0)
    if "text_input" in rule:
        text = values.get(rule["text_input"])
        return speech_seconds(text, inputs.speaking_rate) if isinstance(text, str) else 0.0
    if "frames_input" in rule:
        frames = _number(values.get(rule["frames_input"]))
        fps = _number(values.get(rule["fps_input"])) if "fps_input" in rule else float(rule.get("fps", 0))
        return frames / fps if fps > 0 else 0.0
    return float(rule.get("seconds", 0.0))


def _file_source(prompt: Mapping, node_id: str) -> tuple[str, str] | None:
    """(node id, input name) of the file-loading node an AUDIO link comes from (LoadAudio's `audio`)."""
    node = prompt.get(node_id)
    if not isinstance(node, Mapping):
        return None
    for name, value in (node.get("inputs") or {}).items():
        if isinstance(value, str):
            return node_id, name
    return None


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


class FairQueue:
    """Weighted fair queueing over ComfyUI's single queue: a prompt's number is its virtual finish time,
    max(virtual now, the tenant's last finish) + cost / weight. Lower numbers run first, so a tenant's burst
    only delays its own later prompts, and a weight-4 plan gets four turns for every turn of a weight-1 plan.
    Virtual time advances to the number of each prompt that starts running.

    Numbers are whole (clients type them as integers) and count thousandths of a weighted second; each prompt
    adds at least one, so a tenant's own prompts never tie and keep their order in ComfyUI's heap."""

    UNITS_PER_SECOND = 1000

    def __init__(self) -> None:
        self.virtual_now = 0
        self.last_finish: dict[str, int] = {}

    def number(self, tenant: str, cost: float, weight: float) -> int:
        finish = virtual_finish(self.virtual_now, self.last_finish.get(tenant, 0), cost, weight)
        self.last_finish[tenant] = finish
        return finish

    def started(self, number: float) -> None:
        self.virtual_now = max(self.virtual_now, int(number))


def virtual_finish(virtual_now: int, last_finish: int, cost: float, weight: float) -> int:
    """A prompt's fair queue number: max(virtual now, the tenant's last finish) + cost / weight, in whole
    thousandths of a weighted second, at least one more than the start (FairQueue here, the cluster queue's
    store/lua/cq_enqueue.lua through `tenancy.cluster`)."""
    units = round(max(cost, 1.0) * FairQueue.UNITS_PER_SECOND / max(weight, 1e-6))
    return max(virtual_now, last_finish) + max(units, 1)


def reap_charge(hold: Reservation, policy: str) -> tuple[float, str]:
    """(seconds charged, outcome) for a hold whose prompt's result will never come (its instance crashed or lost
    it): one that never started is refunded; one that started ran on the GPU and is charged its reservation,
    unless the operator's policy (`reap`) is refund."""
    if hold.started is None:
        return 0.0, "reaped"
    return (hold.seconds, "lost_charged") if policy == "charge_reservation" else (0.0, "lost_refunded")


def quota_reason(used: float, held: float, active: int, seconds: float, limit: float, max_active: int) -> str:
    """Whether a reservation of `seconds` fits: `ok`, `concurrency_limit` (the tenant already has `max_active`
    prompts held) or `quota_exceeded` (used + held + seconds over a non-negative daily `limit`). The stores
    decide with it inside their transaction; store/lua/reserve.lua mirrors it for Redis."""
    if active >= max_active:
        return "concurrency_limit"
    if limit >= 0 and used + held + seconds > limit:
        return "quota_exceeded"
    return "ok"


def refusal_for(decision: QuotaDecision, seconds: float) -> Refusal:
    """What a client is told when the store did not admit a prompt that needs `seconds`."""
    if decision.reason == "rate_limited":
        return rate_limited(decision.retry_after)
    if decision.reason == PROMPT_ID_TAKEN:
        return prompt_id_taken()
    if decision.reason == "concurrency_limit":
        return Refusal(429, "concurrency_limit", f"you already have {decision.active} prompts queued or running; "
                       "wait for one to finish", retry_after=5, extra={"active": decision.active})
    return Refusal(429, "quota_exceeded",
                   f"this prompt needs about {seconds:g} s of media and {decision.remaining:g} s are left today",
                   extra={"remaining_seconds": decision.remaining, "needed_seconds": seconds,
                          "used_seconds": decision.used, "held_seconds": decision.held,
                          "daily_seconds": decision.limit})


def prompt_id_taken() -> Refusal:
    """Whoever used the id, the answer is the same: it never says whose it was."""
    return Refusal(409, PROMPT_ID_TAKEN, "this prompt_id was used before: choose a new one, or send none and the "
                   "server picks one")


def settlement(event: str, timed_out: bool, elapsed_s: float, charge_failed: str) -> tuple[str, float | None]:
    """(outcome, seconds charged) for a prompt that ended with ComfyUI's `event`. A success is charged the media
    it produced, which the caller measures (None here); a prompt that failed, was interrupted or ran past its
    plan's deadline is charged its elapsed seconds when the operator's `charge_failed` is `elapsed`, else nothing."""
    if event == "execution_success":
        return "success", None
    outcome = "timeout" if timed_out else "failed" if event == "execution_error" else "interrupted"
    return outcome, elapsed_s if charge_failed == "elapsed" else 0.0


def plan_of(plans: Mapping[str, Any], principal: Principal) -> Any:
    """The caller's plan (None for operators, who have none); a tenant whose plan the config no longer names
    is refused rather than left unlimited."""
    if principal.plan is None:
        return None
    if principal.plan not in plans:
        raise Refusal(403, "unknown_plan", f"plan {principal.plan!r} is not configured")
    return plans[principal.plan]
