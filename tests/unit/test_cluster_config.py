"""The cluster queue's settings: off by default, only on a Redis store, leases that survive a late heartbeat."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tenancy import config, default_config
from tenancy.cluster import eligible, running_cap

REDIS = "redis://127.0.0.1:6379/0"


def test_the_cluster_queue_is_off_by_default_and_the_sqlite_default_stays():
    settings = config.from_mapping({}, Path("."))
    assert not settings.cluster.enabled and settings.store.startswith("sqlite:///")
    assert config.from_mapping(yaml.safe_load(default_config.default_text()), Path(".")).cluster == settings.cluster


def test_the_cluster_queue_on_a_sqlite_store_is_refused_with_the_fix():
    with pytest.raises(config.ConfigError) as refused:
        config.from_mapping({"cluster": {"enabled": True}}, Path("."))
    assert refused.value.key == "cluster.enabled" and "redis://" in refused.value.fix


def test_a_heartbeat_that_leaves_fewer_than_three_per_lease_is_refused():
    with pytest.raises(config.ConfigError) as refused:
        config.from_mapping({"store": REDIS, "cluster": {"enabled": True, "lease_s": 3, "heartbeat_s": 1.5}}, Path("."))
    assert refused.value.key == "cluster.heartbeat_s"
    on = config.from_mapping({"store": REDIS, "cluster": {"enabled": True, "lease_s": 3, "heartbeat_s": 1}}, Path("."))
    assert on.cluster.enabled and on.cluster.lease_s == 3.0


def test_a_plans_running_cap_defaults_to_its_concurrency_limit():
    settings = config.from_mapping({"plans": {"p": {"max_concurrent": 4}, "q": {"max_running": 1}}}, Path("."))
    assert running_cap(settings.plans["p"].max_running, settings.plans["p"].max_concurrent) == 4
    assert running_cap(settings.plans["q"].max_running, settings.plans["q"].max_concurrent) == 1


@pytest.mark.parametrize(("queued", "running", "cap", "offered"), [
    (1, 0, 0, True), (1, 5, 0, True),     # a cap of 0 is none
    (1, 1, 2, True), (1, 2, 2, False),    # at its cap a tenant waits, whatever it has queued
    (0, 0, 2, False),                     # nothing queued, nothing offered
])
def test_a_tenant_is_offered_to_idle_workers_while_it_has_work_and_runs_under_its_cap(queued, running, cap, offered):
    assert eligible(queued, running, cap) is offered
