"""The cluster queue's Prometheus series, built per scrape from one ClusterStatus: instances with liveness, drain
and what each holds, per tenant depth, running and oldest wait, tenants beyond the top N summed as `other`; none at
all without the cluster queue, only `up 0` when the queue could not be read."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tenancy.cluster import ClusterStatus, Held, InstanceStatus, TenantStatus
from tenancy.cluster_metrics import bounded, families
from tenancy.metrics import Metrics

STATUS = ClusterStatus(
    queued=5,
    instances=(
        InstanceStatus("gpu-1", "alive", 0.4, (Held("p1", "tenant-a", True, 12.0, 0.4),
                                                Held("p2", "tenant-b", False, 0.1, 0.1)), ""),
        InstanceStatus("gpu-2", "alive", 1.5, (), "drained"),
        InstanceStatus("gpu-3", "silent", None, (Held("p3", "tenant-c", True, 40.0, 9.0),), "draining"),
    ),
    tenants=(TenantStatus("tenant-a", 4, 1, 2, 7.5), TenantStatus("tenant-b", 1, 1, 0, 0.5),
             TenantStatus("tenant-c", 0, 1, 0, None)),
)


def samples(text: str) -> dict[tuple, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name.startswith("tenancy_cluster_")}


def test_a_scrape_shows_instances_what_each_runs_and_each_tenants_depth_and_wait():
    metrics = Metrics(top_tenants=10)
    metrics.cluster.enabled = True
    metrics.cluster.status = STATUS
    seen = samples(metrics.exposition().decode())
    assert seen[("tenancy_cluster_up", ())] == 1
    assert seen[("tenancy_cluster_queued_prompts", ())] == 5
    assert {k[1][0][1]: v for k, v in seen.items() if k[0] == "tenancy_cluster_instance_alive"} == {
        "gpu-1": 1, "gpu-2": 1, "gpu-3": 0}
    assert seen[("tenancy_cluster_instance_heartbeat_age_seconds", (("cluster_instance", "gpu-2"),))] == 1.5
    assert ("tenancy_cluster_instance_heartbeat_age_seconds", (("cluster_instance", "gpu-3"),)) not in seen
    held = {k[1]: v for k, v in seen.items() if k[0] == "tenancy_cluster_instance_prompts"}
    assert held == {(("cluster_instance", "gpu-1"), ("state", "running"), ("tenant", "tenant-a")): 1,
                    (("cluster_instance", "gpu-1"), ("state", "handed_out"), ("tenant", "tenant-b")): 1,
                    (("cluster_instance", "gpu-3"), ("state", "running"), ("tenant", "tenant-c")): 1}
    assert {k[1][0][1]: v for k, v in seen.items() if k[0] == "tenancy_cluster_instance_draining"} == {
        "gpu-1": 0, "gpu-2": 1, "gpu-3": 1}
    assert {k[1][0][1]: v for k, v in seen.items() if k[0] == "tenancy_cluster_instance_drained"} == {
        "gpu-1": 0, "gpu-2": 1, "gpu-3": 0}
    assert seen[("tenancy_cluster_tenant_queued", (("tenant", "tenant-a"),))] == 4
    assert seen[("tenancy_cluster_tenant_running", (("tenant", "tenant-c"),))] == 1
    assert seen[("tenancy_cluster_tenant_oldest_wait_seconds", (("tenant", "tenant-a"),))] == 7.5
    assert ("tenancy_cluster_tenant_oldest_wait_seconds", (("tenant", "tenant-c"),)) not in seen


def test_series_of_an_instance_that_left_go_with_it():
    metrics = Metrics(top_tenants=10)
    metrics.cluster.enabled = True
    metrics.cluster.status = STATUS
    metrics.exposition()
    metrics.cluster.status = ClusterStatus(0, STATUS.instances[1:2], ())
    seen = samples(metrics.exposition().decode())
    assert [k for k in seen if k[0] == "tenancy_cluster_instance_alive"] == [
        ("tenancy_cluster_instance_alive", (("cluster_instance", "gpu-2"),))]
    assert not [k for k in seen if k[0].startswith("tenancy_cluster_tenant_")]


def test_an_unreadable_queue_is_up_0_and_no_cluster_queue_means_no_series():
    metrics = Metrics(top_tenants=10)
    assert samples(metrics.exposition().decode()) == {}
    metrics.cluster.enabled = True
    assert samples(metrics.exposition().decode()) == {("tenancy_cluster_up", ()): 0}


def test_tenants_beyond_the_top_are_summed_as_other_in_every_series():
    rows = bounded(STATUS.tenants, 1)
    assert rows[0].tenant == "tenant-a"
    assert rows[1] == TenantStatus("other", 1, 2, 0, 0.5)
    assert bounded(STATUS.tenants, 5) == sorted(STATUS.tenants, key=lambda t: (-(t.queued + t.running), t.tenant))
    prompts = next(f for f in families(STATUS, 1) if f.name == "tenancy_cluster_instance_prompts")
    assert {labels for labels, _ in prompts.samples} == {("gpu-1", "tenant-a", "running"),
                                                         ("gpu-1", "other", "handed_out"),
                                                         ("gpu-3", "other", "running")}
