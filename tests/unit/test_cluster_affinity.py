"""Model affinity in the cluster queue: the pure rules (tenancy.affinity), which inputs name models, and the claim
script against a real redis-server agreeing with the rules, the bound holding."""

from __future__ import annotations

import random

import pytest
import redis

from tenancy.affinity import (
    CANDIDATES,
    affine_tenant,
    bound_units,
    hand_out,
    held_models,
    models_of,
    packed,
    unpacked,
    warm,
)
from tenancy.catalogue import Catalogue
from tenancy.cluster import Head, fair_units, in_turn, next_tenant, renumbered
from tenancy.store.cluster_queue import ClusterQueue

OBJECT_INFO = {
    "CheckpointLoaderSimple": {"input": {"required": {"ckpt_name": [["sd15.safetensors", "xl/base.safetensors"]]}}},
    "LoraLoader": {"input": {"required": {"model": ["MODEL"], "lora_name": [["detail.safetensors"]],
                                          "strength_model": ["FLOAT", {"default": 1.0}]}}},
    # the newer combo shape: options in the spec's dict
    "UNETLoader": {"input": {"required": {"unet_name": ["COMBO", {"options": ["flux.safetensors"]}],
                                          "weight_dtype": [["default", "fp8_e4m3fn"]]}}},
    "KSampler": {"input": {"required": {"model": ["MODEL"], "sampler_name": [["euler", "dpmpp_2m"]]}}},
    "PackLoader": {"input": {"required": {"repo": ["STRING", {"default": ""}]}}},
    "EmptyList": {"input": {"required": {"ckpt_name": [[]]}}},
}
MODEL_FILES = {"checkpoints": ["sd15.safetensors", "xl/base.safetensors", "other.ckpt"],
               "loras": ["detail.safetensors"], "diffusion_models": ["flux.safetensors"], "vae": []}


def catalogue() -> Catalogue:
    return Catalogue.build(OBJECT_INFO, {"PackLoader": {"model_inputs": ["repo"]}}, model_files=MODEL_FILES)


def test_model_inputs_are_combos_listing_a_model_folder_and_inputs_a_node_declares():
    nodes = catalogue().nodes
    assert nodes["CheckpointLoaderSimple"].model_inputs == {"ckpt_name": "checkpoints"}
    assert nodes["LoraLoader"].model_inputs == {"lora_name": "loras"}
    assert nodes["UNETLoader"].model_inputs == {"unet_name": "diffusion_models"}  # not its dtype combo
    assert nodes["KSampler"].model_inputs == {} and nodes["EmptyList"].model_inputs == {}
    assert nodes["PackLoader"].model_inputs == {"repo": "models"}
    assert Catalogue.build(OBJECT_INFO).nodes["CheckpointLoaderSimple"].model_inputs == {}  # nothing listed: none


def test_a_prompts_models_are_its_model_inputs_values_sorted_once_each():
    prompt = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "xl/base.safetensors"}},
              "2": {"class_type": "LoraLoader", "inputs": {"model": ["1", 0], "lora_name": "detail.safetensors"}},
              "3": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "xl/base.safetensors"}},
              "4": {"class_type": "KSampler", "inputs": {"model": ["2", 0], "sampler_name": "euler"}},
              "5": {"class_type": "PackLoader", "inputs": {"repo": ["9", 0]}},  # a link names no file
              "6": {"class_type": "Unknown", "inputs": {"ckpt_name": "sd15.safetensors"}}, "7": "junk"}
    models = models_of(prompt, catalogue())
    assert models == ("checkpoints/xl/base.safetensors", "loras/detail.safetensors")
    assert unpacked(packed(models)) == models and unpacked("") == () and packed(()) == ""
    assert models_of({"1": {"class_type": "KSampler", "inputs": {}}}, catalogue()) == ()


def test_warm_held_and_the_bound_in_fair_units():
    assert warm(("a", "b"), {"a", "b", "c"}) and not warm(("a", "d"), {"a", "b"})
    assert not warm((), {"a"})  # names no model: it saves no load by going first, never preferred
    assert [hand_out(m, {"a"}) for m in (("a",), ("a", "b"), ())] == ["warm", "cold", "none"]
    recent = [("a",), (), ("b", "c"), ()]
    assert held_models(recent, 1) == ("b", "c")  # prompts that named none leave what is loaded alone
    assert held_models(recent, 2) == ("a", "b", "c") and held_models(recent, 8) == ("a", "b", "c")
    assert held_models([], 1) == ()
    assert bound_units(2.5) == 2500 and bound_units(0) == 0


def test_the_affine_tenant_is_the_first_warm_one_within_the_bound_else_the_fair_one():
    heads = [Head("a", 1000, 0, 5), Head("b", 2000, 0, 5), Head("c", 3500, 0, 5), Head("d", 2000, 1, 5)]
    assert affine_tenant(heads, {"b", "c"}, 0) == next_tenant(heads) == "a"  # off: fair order alone
    assert affine_tenant(heads, {"b", "c"}, 2500) == "b"
    assert affine_tenant(heads, {"c"}, 2499) == "a"  # c is 2500 above the lowest: out of reach
    assert affine_tenant(heads, {"c"}, 2500) == "c"
    assert affine_tenant(heads, {"b", "d"}, 1000) == "b"  # equal numbers: fewer running first
    assert affine_tenant(heads, {"a", "b"}, 5000) == "a"  # the fair one is warm itself
    assert affine_tenant(heads, set(), 5000) == "a" and affine_tenant([], {"a"}, 10) is None
    many = [Head(f"t{i:02d}", 1000, 0, 1) for i in range(CANDIDATES + 1)]
    assert affine_tenant(many, {f"t{CANDIDATES:02d}"}, 10) == "t00"  # past the candidates looked at


def test_within_a_turn_the_longest_warm_prompt_starts():
    assert in_turn([1.0, 3.0, 2.0], 3, [True, False, True]) == 2
    assert in_turn([1.0, 3.0, 2.0], 3, [False, False, False]) == 1  # none warm: the longest
    assert in_turn([1.0, 3.0, 2.0], 2, [False, False, True]) == 1  # the warm one is outside the window
    assert in_turn([1.0, 3.0], 1, [False, True]) == 0


@pytest.fixture
def url(redis_server) -> str:
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushdb()
    return redis_server.url


def worker(url: str, name: str, lookahead: int = 1, affinity: int = 0) -> ClusterQueue:
    return ClusterQueue(url, name, lease_s=5, max_redeliveries=1, kept_s=60, lookahead=lookahead, affinity=affinity)


def finish(queue: ClusterQueue, claim) -> None:
    assert queue.start(claim.prompt_id, claim.attempt) and queue.complete(claim.prompt_id, claim.attempt, "done")


@pytest.mark.redis
def test_one_worker_keeps_its_model_until_the_other_tenant_is_further_behind_than_the_bound(url):
    """Two tenants of weight 1 queue six prompts each, A on model a, B on model b (a prompt: 1000 units); one worker
    with a bound of 2500: it keeps its model while the tenant it serves is within 2500 of the other's next number,
    so 3 loads instead of fair order's 12, and no prompt started while a prompt numbered 2500 below it waited."""
    gpu = worker(url, "gpu-1", affinity=2500)
    for tenant, model in (("a", "checkpoints/a"), ("b", "checkpoints/b")):
        for i in range(6):
            gpu.enqueue(f"{tenant}{i + 1}", tenant, fair_units(1.0, 1.0), 0, "[{}, {}, [], null, 0]", 1.0, (model,))
    recent: list[tuple[str, ...]] = []
    order = []
    while (claim := gpu.claim(held_models(recent, 1))) is not None:
        waiting = [int(gpu.job(f"{t}{i}")["number"]) for t in "ab" for i in range(1, 7)
                   if gpu.job(f"{t}{i}")["state"] == "queued"]
        assert claim.number <= min(waiting, default=claim.number) + 2500
        order.append((claim.prompt_id, gpu.job(claim.prompt_id)["warm"]))
        recent.append(claim.models)
        finish(gpu, claim)
    assert [pid for pid, _warm in order] == ["a1", "a2", "a3", "b1", "b2", "b3", "b4", "b5", "b6", "a4", "a5", "a6"]
    assert [pid for pid, was_warm in order if was_warm == "0"] == ["a1", "b1", "a4"]  # the loads


@pytest.mark.redis
def test_affinity_claims_follow_the_pure_rules_over_random_queues(url):
    """Enqueues, claims with random held models, and ends interleaved at random (two weights, uneven estimates,
    prompts naming zero to two of three models, some left running): every claim is affine_tenant over the tenants'
    lowest numbers and counts, then in_turn over that tenant's window with its warm flags, renumbered after; the
    served tenant's next number is within the bound of the lowest."""
    rng = random.Random(5)
    bound = 1500
    gpus = [worker(url, f"gpu-{i}", lookahead=3, affinity=bound) for i in range(3)]
    queued: dict[str, list[tuple[int, float, str, tuple[str, ...]]]] = {}
    running: dict[str, list] = {}  # tenant -> claims not ended
    warm_seen = passed_over = 0
    for step in range(240):
        roll = rng.random()
        if roll < 0.45:
            tenant = rng.choice("abcd")
            seconds = rng.choice([0.5, 1.0, 2.0])
            models = tuple(sorted(rng.sample(["m1", "m2", "m3"], rng.choice([0, 1, 1, 2]))))
            pid = f"p{step}"
            number = gpus[0].enqueue(pid, tenant, fair_units(seconds, 4.0 if tenant == "a" else 1.0), 0,
                                     "[{}, {}, [], null, 0]", seconds, models)
            queued.setdefault(tenant, []).append((number, seconds, pid, models))
            continue
        if roll < 0.6 and any(running.values()):
            tenant = rng.choice([t for t, claims in running.items() if claims])
            gpu, claim = running[tenant].pop(rng.randrange(len(running[tenant])))
            finish(gpu, claim)
            continue
        gpu = rng.choice(gpus)
        held = tuple(sorted(rng.sample(["m1", "m2", "m3"], rng.choice([0, 1, 2]))))
        heads = [Head(t, min(q)[0], len(running.get(t, ())), len(q)) for t, q in queued.items() if q]
        claim = gpu.claim(held)
        if not heads:
            assert claim is None
            continue
        windows = {t: sorted(queued[t])[:3] for t in queued if queued[t]}
        warm_tenants = {t for t, window in windows.items() if any(warm(m, held) for _n, _s, _p, m in window)}
        tenant = affine_tenant(heads, warm_tenants, bound)
        mine = sorted(queued[tenant])
        flags = [warm(m, held) for _n, _s, _pid, m in mine]
        pick = in_turn([seconds for _n, seconds, _pid, _m in mine], 3, flags)
        assert (claim.tenant, claim.prompt_id, claim.models) == (tenant, mine[pick][2], mine[pick][3])
        lowest = min(h.number for h in heads)
        assert min(queued[tenant])[0] <= lowest + bound
        passed_over += tenant != next_tenant(heads)
        warm_seen += flags[pick]
        assert gpu.job(claim.prompt_id)["warm"] == str(int(flags[pick]))
        numbers = renumbered([n for n, _s, _pid, _m in mine], pick)
        queued[tenant] = [(n, s, pid, m) for n, (_n, s, pid, m) in zip(numbers[:-1], mine[:pick], strict=True)] \
            + mine[pick + 1:]
        assert gpu.job(claim.prompt_id)["number"] == str(numbers[-1])
        running.setdefault(tenant, []).append((gpu, claim))
    assert passed_over > 5 and warm_seen > 20  # the rules were exercised, not only fair order


@pytest.mark.redis
def test_a_newcomer_queues_behind_the_tenant_affinity_passed_over(url):
    """Virtual time advances to the lowest waiting number, not to the number of the prompt affinity served: a
    newcomer's first prompt lands right behind the passed-over tenant's next, as in fair order."""
    gpu = worker(url, "gpu-1", affinity=5000)
    for tenant, model in (("a", "m/a"), ("b", "m/b")):
        for i in range(4):
            gpu.enqueue(f"{tenant}{i + 1}", tenant, fair_units(1.0, 1.0), 0, "[{}, {}, [], null, 0]", 1.0, (model,))
    for expected in ("a1", "a2", "a3"):  # b1 (1000) waits while a2 (2000) and a3 (3000) start
        claim = gpu.claim(("m/a",))
        assert claim.prompt_id == expected
        finish(gpu, claim)
    assert gpu.enqueue("c1", "c", fair_units(1.0, 1.0), 0, "[{}, {}, [], null, 0]", 1.0, ()) == 2000
    assert [gpu.claim(()).prompt_id for _ in range(2)] == ["b1", "c1"]  # c1 names no model: never warm


def test_affinity_is_off_by_default_and_its_bound_is_checked():
    from pathlib import Path

    from tenancy import config

    settings = config.from_mapping({}, Path("."))
    assert settings.cluster.affinity_s == 0 and bound_units(settings.cluster.affinity_s) == 0
    assert settings.cluster.affinity_recent == 1
    with pytest.raises(config.ConfigError) as refused:
        config.from_mapping({"cluster": {"affinity_s": -1}}, Path("."))
    assert refused.value.key == "cluster.affinity_s"
