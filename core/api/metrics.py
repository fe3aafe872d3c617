"""`GET /metrics`: Prometheus text built from state every process shares (Valkey), so the
figures are right however many gateway and worker processes run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from litestar import Response, get
from litestar.datastructures import State
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from c360.adapters.bus import DLQ, ID_RESOLUTION, RAW_EVENTS, UPDATED_PROFILES
from c360.analytics import cache as analytics_cache
from c360.api.notifications import notification_metrics
from c360.channels import delivery as deliveries
from c360.stages import F2_GROUP, F3_GROUP, LAKE_GROUP
from c360.stages.notifications_stage import NOTIFICATIONS_GROUP
from c360.stages.segments_stage import SEGMENTS_GROUP

#: The backlog of each stage: entries of its topic it has not acknowledged yet.
STAGES = (
    (RAW_EVENTS, F2_GROUP),
    (RAW_EVENTS, LAKE_GROUP),
    (ID_RESOLUTION, F3_GROUP),
    (UPDATED_PROFILES, SEGMENTS_GROUP),
    (UPDATED_PROFILES, NOTIFICATIONS_GROUP),
)


class SharedStateCollector:
    """Reads counters and backlogs from Valkey at scrape time."""

    def __init__(self, state: State) -> None:
        self.state = state

    def collect(self) -> Iterator[Any]:
        """The metric families of one scrape."""
        valkey = self.state.runtime.valkey
        accepted = CounterMetricFamily(
            "c360_events_accepted", "Events the gateway accepted.", labels=["source"]
        )
        rejected = CounterMetricFamily(
            "c360_events_rejected", "Events refused and sent to c360-dlq.", labels=["source"]
        )
        for key in valkey.scan_iter(match="c360:count:*", count=500):
            _, _, outcome, source = key.decode().split(":", 3)
            family = accepted if outcome == "accepted" else rejected
            family.add_metric([source], int(valkey.get(key) or 0))
        yield accepted
        yield rejected

        backlog = GaugeMetricFamily(
            "c360_stage_backlog",
            "Bus entries a stage has not finished (each entry holds one or more events).",
            labels=["topic", "group"],
        )
        for topic, group in STAGES:
            backlog.add_metric([topic, group], self.state.runtime.bus.backlog(topic, group))
        yield backlog

        dlq = GaugeMetricFamily("c360_dlq_entries", "Entries kept on the c360-dlq topic.")
        dlq.add_metric([], sum(valkey.xlen(key) for key in valkey.scan_iter(match=f"{DLQ}:*")))
        yield dlq
        yield from analytics_cache_metrics(valkey)
        yield delivery_metrics(valkey)
        yield from notification_metrics(self.state.runtime)


def analytics_cache_metrics(valkey: Any) -> Iterator[Any]:
    """Hits and misses of the analytics answer cache, and the share of hits (0 before any
    question, rather than a NaN that breaks dashboards)."""
    hits, misses = analytics_cache.counts(valkey)
    hit_family = CounterMetricFamily(
        "c360_analytics_cache_hits", "Analytics questions answered from the Valkey cache."
    )
    hit_family.add_metric([], hits)
    yield hit_family
    miss_family = CounterMetricFamily(
        "c360_analytics_cache_misses", "Analytics questions computed on the lake or the store."
    )
    miss_family.add_metric([], misses)
    yield miss_family
    ratio = GaugeMetricFamily(
        "c360_analytics_cache_hit_ratio", "Share of analytics questions answered from the cache."
    )
    ratio.add_metric([], hits / (hits + misses) if hits + misses else 0.0)
    yield ratio


def delivery_metrics(valkey: Any) -> CounterMetricFamily:
    """Outbound messages by channel and outcome: attempts sent, retried, failed, bounced, and
    the providers' later word (delivered, read, opened, unsubscribed)."""
    family = CounterMetricFamily(
        "c360_deliveries",
        "Outbound messages by channel and outcome.",
        labels=["channel", "outcome"],
    )
    for (channel, outcome), count in sorted(deliveries.counts(valkey).items()):
        family.add_metric([channel, outcome], count)
    return family


@get("/metrics", sync_to_thread=True, opt={"public": True})
def metrics(state: State) -> Response:
    """Prometheus exposition of c360's shared counters and backlogs."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SharedStateCollector(state))
    return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")
