"""The cluster queue as Prometheus gauges, computed at scrape time from one `ClusterStatus` read (the scrape handler
reads it; this module turns it into series). Instances are as many as the deployment has; tenants are bounded to
the `top` with the deepest queues (queued + running), the rest summed under `other`. A series for an instance or
tenant that left disappears with it (the gauges are built per scrape, never kept). The instance label is
`cluster_instance` (Prometheus sets `instance` to the scraped target), and every instance exports the whole
cluster's series: aggregate over targets with `max by (cluster_instance)` or scrape one."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily

from .cluster import ALIVE, DRAINED, ClusterStatus, TenantStatus

OTHER = "other"


@dataclass(frozen=True)
class Family:
    name: str
    help: str
    labels: tuple[str, ...]
    samples: tuple[tuple[tuple[str, ...], float], ...]


def families(status: ClusterStatus | None, top: int) -> list[Family]:
    """Every cluster series of one scrape; `status` None: the queue could not be read (only `up` 0)."""
    up = Family("tenancy_cluster_up", "1 while the cluster queue in Redis answered this scrape", (),
                (((), 0.0 if status is None else 1.0),))
    if status is None:
        return [up]
    instances = status.instances
    held: dict[tuple[str, str, str], int] = {}
    tenants = bounded(status.tenants, top)
    kept = {t.tenant for t in tenants}
    for inst in instances:
        for h in inst.holds:
            key = (inst.name, h.tenant if h.tenant in kept else OTHER, "running" if h.started else "handed_out")
            held[key] = held.get(key, 0) + 1
    return [
        up,
        Family("tenancy_cluster_queued_prompts", "Prompts queued in the whole cluster", (),
               (((), float(status.queued)),)),
        Family("tenancy_cluster_instance_alive", "1 while the instance's heartbeat lives, 0 when silent (it holds "
               "prompts past its lease: the reaper takes them) or stopped", ("cluster_instance",),
               tuple(((i.name,), float(i.liveness == ALIVE)) for i in instances)),
        Family("tenancy_cluster_instance_heartbeat_age_seconds", "Since the instance's last heartbeat (alive ones)",
               ("cluster_instance",), tuple(((i.name,), i.heartbeat_age_s) for i in instances
                                    if i.heartbeat_age_s is not None)),
        Family("tenancy_cluster_instance_prompts", "Prompts an instance holds, by tenant and state (running, or "
               "handed out and not started yet)", ("cluster_instance", "tenant", "state"),
               tuple((key, float(n)) for key, n in sorted(held.items()))),
        Family("tenancy_cluster_instance_draining", "1 while an operator drains the instance (it claims nothing "
               "new)", ("cluster_instance",), tuple(((i.name,), float(bool(i.drain))) for i in instances)),
        Family("tenancy_cluster_instance_drained", "1 once a drained instance acknowledged it and holds nothing: "
               "stopping it costs nothing", ("cluster_instance",), tuple(((i.name,), float(i.drain == DRAINED))
                                                                 for i in instances)),
        Family("tenancy_cluster_tenant_queued", "A tenant's prompts queued in the cluster", ("tenant",),
               tuple(((t.tenant,), float(t.queued)) for t in tenants)),
        Family("tenancy_cluster_tenant_running", "A tenant's prompts handed to workers", ("tenant",),
               tuple(((t.tenant,), float(t.running)) for t in tenants)),
        Family("tenancy_cluster_tenant_oldest_wait_seconds", "How long a tenant's next queued prompt has waited",
               ("tenant",), tuple(((t.tenant,), t.oldest_wait_s) for t in tenants if t.oldest_wait_s is not None)),
    ]


def bounded(tenants: tuple[TenantStatus, ...], top: int) -> list[TenantStatus]:
    """The `top` tenants with the most queued and running prompts (then by name), the rest summed as `other`
    (its cap 0, its wait the longest of theirs)."""
    ranked = sorted(tenants, key=lambda t: (-(t.queued + t.running), t.tenant))
    kept, rest = ranked[:max(top, 0)], ranked[max(top, 0):]
    if not rest:
        return kept
    waits = [t.oldest_wait_s for t in rest if t.oldest_wait_s is not None]
    return [*kept, TenantStatus(OTHER, sum(t.queued for t in rest), sum(t.running for t in rest), 0,
                                max(waits) if waits else None)]


class ClusterCollector:
    """A Prometheus collector of the cluster series; the scrape handler sets `status` before each exposition."""

    def __init__(self, top: int) -> None:
        self.top = top
        self.enabled = False  # no cluster series at all on an instance without the cluster queue
        self.status: ClusterStatus | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if not self.enabled:
            return
        for family in families(self.status, self.top):
            gauge = GaugeMetricFamily(family.name, family.help, labels=list(family.labels))
            for labels, value in family.samples:
                gauge.add_metric(list(labels), value)
            yield gauge
