"""Model affinity in the cluster queue (`cluster.affinity_s`, off by default), over data: which model files a
prompt loads, whether a worker already holds them, and which tenant an idle worker serves when it prefers a
prompt it need not load a model for, at a bounded cost in fairness.

A prompt's models are the values of its model inputs (combos listing a ComfyUI model folder, and inputs a node
declares in `TENANCY_META["model_inputs"]`), computed when it is admitted and carried in its queue entry. A worker
holds the models of the last prompts it ran that named any (`held`); a prompt is warm on it when it names models
and every one is held there. One that names none is never warm: it loads nothing wherever and whenever it runs, so
starting it ahead of its turn would cost fairness and save no load.

The bound, in the fair queue's own numbers (thousandths of a weighted second, `cluster.fair_units`): with affinity
on, a worker serves the first warm tenant in fair order among the tenants whose next prompt is numbered at most
`bound` above the lowest next number of the tenants that may start (queued, under their cap); when none is warm,
the fair one (`cluster.next_tenant`). Since a prompt's number is its tenant's virtual finish, a prompt numbered n
never waits while one numbered above n + bound starts: each other tenant of weight w starts at most
bound / 1000 * w estimated seconds of work ahead of it beyond what fair order gives it.

`store/lua/cq_claim.lua` applies these rules atomically in Redis and mirrors them line for line; the tests hold
the two alike."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from .admission import FairQueue
from .catalogue import Catalogue
from .cluster import Head, next_tenant

CANDIDATES = 16  # tenants within the bound a claim looks at, lowest numbers first (by name on a tie)
SEPARATOR = "\n"  # between the model files of a queue entry (never in a file name ComfyUI lists)


def bound_units(seconds: float) -> int:
    """`cluster.affinity_s` in the fair queue's numbers (0: off)."""
    return max(round(seconds * FairQueue.UNITS_PER_SECOND), 0)


def models_of(prompt: Mapping[str, Any], catalogue: Catalogue) -> tuple[str, ...]:
    """The model files a prompt names, as `<folder>/<name>`, sorted and once each (linked inputs are not files)."""
    found = set()
    for node in prompt.values():
        if not isinstance(node, Mapping):
            continue
        spec = catalogue.get(str(node.get("class_type", "")))
        inputs = node.get("inputs")
        if spec is None or not spec.model_inputs or not isinstance(inputs, Mapping):
            continue
        for name, folder in spec.model_inputs.items():
            value = inputs.get(name)
            if isinstance(value, str) and value and SEPARATOR not in value:
                found.add(f"{folder}/{value}")
    return tuple(sorted(found))


def packed(models: Iterable[str]) -> str:
    """A prompt's models as its queue entry carries them ('' for none)."""
    return SEPARATOR.join(models)


def unpacked(text: str | None) -> tuple[str, ...]:
    return tuple(m for m in (text or "").split(SEPARATOR) if m)


def warm(models: Sequence[str], held: Collection[str]) -> bool:
    """Whether a prompt naming `models` (one or more) loads none of them on a worker holding `held`."""
    return bool(models) and all(model in held for model in models)


def hand_out(models: Sequence[str], held: Collection[str]) -> str:
    """How a prompt handed to a worker met what it holds, for the claims metric: `warm` (no load), `cold` (a load),
    `none` (it names no model)."""
    return "none" if not models else "warm" if warm(models, held) else "cold"


def held_models(recent: Sequence[Sequence[str]], keep: int) -> tuple[str, ...]:
    """What a worker holds: the models of its last `keep` prompts that named any (`recent`: the models of the
    prompts it ran, oldest first). A prompt that names none leaves what is loaded alone."""
    named = [models for models in recent if models]
    return tuple(sorted({model for models in (named[-keep:] if keep > 0 else []) for model in models}))


def affine_tenant(heads: Iterable[Head], warm_tenants: Collection[str], bound: int) -> str | None:
    """The tenant an idle worker serves with affinity (`warm_tenants`: those with a warm prompt among the queued
    ones their turn may start, see `cluster.in_turn`): the first warm one in `next_tenant` order among the first
    CANDIDATES tenants (by number, then name) numbered within `bound` of the lowest; else `next_tenant`.
    With `bound` 0 affinity is off: `next_tenant` alone."""
    heads = list(heads)
    fair = next_tenant(heads)
    if bound <= 0 or fair is None:
        return fair
    lowest = min(h.number for h in heads)
    near = sorted((h for h in heads if h.number <= lowest + bound), key=lambda h: (h.number, h.tenant))[:CANDIDATES]
    best = min((h for h in near if h.tenant in warm_tenants), key=lambda h: (h.number, h.running, h.queued, h.tenant),
               default=None)
    return fair if best is None else best.tenant
