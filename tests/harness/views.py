"""What the tests of a tenant's views (history, jobs) share: a cheap prompt told apart by its steps, and two
tenants' prompts run in turn, so that each tenant's entries have the other's in between on the server."""

from __future__ import annotations


def params(steps: int) -> dict:
    return {"1": {"class_type": "TenancyTestParams", "inputs": {
        "steps": steps, "cfg": 7.0, "duration": 0.1, "width": 256, "model_name": "base.safetensors"}}}


def interleave(own, other, steps: tuple[int, ...]) -> list[str]:
    """own, other, own, other, ... one at a time: `own`'s prompt ids in the order they ran."""
    ran = []
    for step in steps:
        ran.append(own.run(params(step))["prompt"][1])
        other.run(params(step))
    return ran
