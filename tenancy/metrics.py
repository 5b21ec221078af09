"""Prometheus metrics of the guard, in a registry of its own; tenant labels bounded to the busiest N."""

from __future__ import annotations

import inspect
import time
from collections import Counter as Tally

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from .cluster_metrics import ClusterCollector

OTHER = "other"
RERANK_EVERY = 256
SECONDS_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class Metrics:
    def __init__(self, top_tenants: int) -> None:
        self.registry = CollectorRegistry()
        self.top_tenants = top_tenants
        self.seen: Tally[str] = Tally()
        self._top: set[str] | None = None
        self._calls = 0
        self._children: dict[tuple, object] = {}
        r = self.registry
        self.requests = Counter("tenancy_requests_total", "Requests by route class, status and tenant",
                                ["route_class", "status", "tenant"], registry=r)
        self.admission = Counter("tenancy_admission_decisions_total", "Admission decisions by reason", ["reason"],
                                 registry=r)
        self.uncharged = Counter("tenancy_uncharged_prompts_total",
                                 "Prompts let through uncharged because the store was unreachable", registry=r)
        self.quota_used = Gauge("tenancy_quota_used_seconds", "Seconds used today", ["tenant"], registry=r)
        self.quota_held = Gauge("tenancy_quota_held_seconds", "Seconds held by queued/running prompts", ["tenant"],
                                registry=r)
        self.queue_wait = Histogram("tenancy_queue_wait_seconds", "Admission to start of execution", ["plan"],
                                    buckets=SECONDS_BUCKETS, registry=r)
        self.execution = Histogram("tenancy_execution_seconds", "Execution time", ["plan"], buckets=SECONDS_BUCKETS,
                                   registry=r)
        self.timeouts = Counter("tenancy_timeouts_total", "Prompts interrupted at their plan's deadline", ["plan"],
                                registry=r)
        self.store_latency = Histogram("tenancy_store_seconds", "Store call latency", ["backend"],
                                       buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1),
                                       registry=r)
        self.store_errors = Counter("tenancy_store_errors_total", "Store calls that failed", registry=r)
        self.outbox_backlog = Gauge("tenancy_outbox_backlog", "Store writes after execution waiting in the outbox "
                                    "for the store", registry=r)
        self.output_uploads = Counter("tenancy_output_uploads_total", "Uploads of outputs to the bucket by result "
                                      "(a failed one is retried)", ["result"], registry=r)
        self.output_upload_backlog = Gauge("tenancy_output_upload_backlog", "Outputs waiting for their upload",
                                           registry=r)
        self.output_store_up = Gauge("tenancy_output_store_up", "1 while the outputs' bucket answers", registry=r)
        self.output_downloads = Counter("tenancy_output_downloads_total", "Downloads of outputs by where they were "
                                        "served from (redirect to the bucket, or disk)", ["served_from"], registry=r)
        self.user_data_bucket = Counter("tenancy_user_data_bucket_requests_total", "Bucket requests for tenants' "
                                        "user data in a cluster, by request (list, get, put, head, delete)",
                                        ["request"], registry=r)
        self.cluster_claims = Counter("tenancy_cluster_claims_total", "Prompts this instance's worker took from the "
                                      "cluster queue, by how their models met the ones it ran last: warm (no load), "
                                      "cold (a load), none (no model named)", ["models"], registry=r)
        self.gpu_memory = Gauge("tenancy_gpu_memory_bytes", "GPU memory allocated by torch", ["device"], registry=r)
        self.cluster = ClusterCollector(top_tenants)  # the cluster queue's series, from a status read per scrape
        r.register(self.cluster)

    def tenant_label(self, tenant: str | None) -> str:
        """The tenant as a label value: one of the busiest `top_tenants` (re-ranked every RERANK_EVERY calls),
        else `other`."""
        if not tenant:
            return "-"
        self.seen[tenant] += 1
        if len(self.seen) <= self.top_tenants:
            return tenant
        self._calls += 1
        if self._top is None or self._calls % RERANK_EVERY == 0:
            self._top = {name for name, _ in self.seen.most_common(self.top_tenants)}
        return tenant if tenant in self._top else OTHER

    def count_request(self, route_class: str, status: int, tenant: str | None) -> None:
        self.series(self.requests, route_class, str(status), self.tenant_label(tenant)).inc()

    def series(self, metric, *labels: str):
        """`metric.labels(*labels)`, looked up once: labels() validates and locks on every call. Label values
        are bounded (route classes, statuses, plans, reasons, the top tenants)."""
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def exposition(self) -> bytes:
        self._sample_gpu()
        return generate_latest(self.registry)

    def _sample_gpu(self) -> None:
        import sys

        torch = sys.modules.get("torch")
        if torch is None or not torch.cuda.is_available():
            return
        for index in range(torch.cuda.device_count()):
            self.gpu_memory.labels(str(index)).set(torch.cuda.memory_allocated(index))


class TimedStore:
    """The store, with every call's latency and failures recorded."""

    def __init__(self, store, metrics: Metrics) -> None:
        self._store = store
        self._latency = metrics.store_latency.labels(store.description.partition(":")[0])
        self._errors = metrics.store_errors

    def __getattr__(self, name: str):
        attribute = getattr(self._store, name)
        if name.startswith("_") or not callable(attribute):
            return attribute  # data: read from the store each time
        if not inspect.iscoroutinefunction(attribute):
            setattr(self, name, attribute)  # local synchronous checks (identity_version): nothing to time
            return attribute

        async def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return await attribute(*args, **kwargs)
            except Exception:
                self._errors.inc()
                raise
            finally:
                self._latency.observe(time.perf_counter() - start)

        setattr(self, name, timed)  # built once per method, then found without __getattr__
        return timed
