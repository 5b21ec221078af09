"""Metric labels stay bounded: the busiest tenants keep their names, the rest share `other`."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tenancy.metrics import OTHER, RERANK_EVERY, Metrics


def request_counts(metrics: Metrics) -> dict[str, float]:
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        if family.name == "tenancy_requests":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    tenant = sample.labels["tenant"]
                    counts[tenant] = counts.get(tenant, 0) + sample.value
    return counts


def test_request_counts_keep_the_busiest_tenants_and_fold_the_rest_into_other():
    metrics = Metrics(top_tenants=2)
    calls = {"big": 3 * RERANK_EVERY, "mid": 2 * RERANK_EVERY, "small": 5, "tiny": 1}
    for tenant, n in calls.items():
        for _ in range(n):
            metrics.count_request("tenant", 200, tenant)
    metrics.count_request("public", 401, None)
    counts = request_counts(metrics)
    assert set(counts) <= {"big", "mid", OTHER, "-"}
    assert counts["-"] == 1
    assert sum(counts.values()) == sum(calls.values()) + 1  # nothing is lost by folding


def test_a_tenant_that_becomes_busy_gets_its_own_label_after_a_rerank():
    metrics = Metrics(top_tenants=1)
    for _ in range(10):
        metrics.tenant_label("early")
    assert metrics.tenant_label("late") == OTHER
    labels = [metrics.tenant_label("late") for _ in range(2 * RERANK_EVERY)]
    assert labels[-1] == "late" and metrics.tenant_label("early") == OTHER
