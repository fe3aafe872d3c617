"""F5 analytics latency: the overview from the Valkey cache, the same question on the profile
store (PostgreSQL) uncached, and lake queries (chdb) on the CDNOW data and on a generated
10-million-event lake; p50 and p99 of each, and the cache-versus-store ratio.

    python bench/analytics.py               # CDNOW + a 10M-event lake (made once, ~1 minute,
                                            # then reused from ~/.cache/c360/bench)
    python bench/analytics.py --quick       # CDNOW + a 1M-event lake, fewer repetitions
    python bench/analytics.py --json        # one JSON object on stdout

It starts an embedded PostgreSQL and Valkey in a temporary folder (127.0.0.1 and a unix
socket; both stopped at the end) and loads CDNOW through the real stages in this process: F1
(`ingest`), F2 (`persist`), F3 (`resolve`, fed from the id-resolution topic) and the lake sink,
so the store and the lake hold what the trial would. Every figure comes with the answer it
timed, checked against numbers computed apart (the file's plain sums; the generator's own
counts): a wrong answer makes the exit status 1, however fast it was.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import _analytics_lake
import psycopg

from c360 import migrate
from c360.adapters.bus import ID_RESOLUTION
from c360.analytics.filters import Filters
from c360.analytics.overview import (
    lake_event_counts,
    new_profile_counts,
    overview,
    profiles_total,
    store_numbers,
)
from c360.analytics.trends import lake_counts_by
from c360.appliance.engines import EmbeddedPostgres, EmbeddedValkey
from c360.connectors import cdnow
from c360.events.f1 import IngestContext, ParsedRequest, ingest
from c360.events.model import encode
from c360.runtime import Runtime
from c360.settings import load_settings
from c360.stages import F3_GROUP, f2_persist, f3_resolve, lake_sink

REPO = Path(__file__).resolve().parents[1]
SOURCE = "cdnow"
#: Events per stage call while loading CDNOW: the workers' batches are of this order.
LOAD_BATCH = 1_000
DEFAULT_CACHE = Path.home() / ".cache" / "c360" / "bench"


def main(argv: list[str] | None = None) -> int:
    """Measure and print the report; exit 1 when an answer was wrong."""
    args = _parse(argv)
    lake_events = args.lake_events or (1_000_000 if args.quick else 10_000_000)
    repeat = args.repeat or (100 if args.quick else 300)
    report = run(args.cdnow_lines, lake_events, repeat, args.cache_dir, verbose=not args.json)
    print(json.dumps(report, indent=2, default=str) if args.json else render(report))
    return 0 if report["checks_ok"] else 1


def run(
    cdnow_lines: int | None, lake_events: int, repeat: int, cache_dir: Path, verbose: bool
) -> dict[str, Any]:
    """Every measurement, on fresh engines, with the answers' checks."""
    generated = _analytics_lake.ensure(cache_dir, lake_events)
    _say(verbose, f"generated lake: {generated.events:,} events in {generated.data_dir}")
    with _engines() as settings:
        runtime = Runtime(settings)
        try:
            expected = load_cdnow(runtime, cdnow_lines, verbose)
            report = measure_cdnow(runtime, expected, repeat)
        finally:
            runtime.close()
        big = Runtime(dataclasses.replace(settings, data_dir=generated.data_dir))
        try:
            report |= measure_generated(big, generated, max(5, repeat // 20))
        finally:
            big.close()
    report["checks"] |= report.pop("checks_generated")
    # these machines are shared: a busy one stretches every p99, so say how busy it was
    report["load_average_1m"] = round(os.getloadavg()[0], 2)
    report["checks_ok"] = all(report["checks"].values())
    return report


def load_cdnow(runtime: Runtime, lines: int | None, verbose: bool) -> dict[str, Any]:
    """CDNOW through F1, F2, F3 and the lake sink; returns the file's plain figures."""
    path = cdnow.fetch(REPO / "fixtures" / "cdnow")
    purchases = list(cdnow.read(path, lines))
    started = time.perf_counter()
    for start in range(0, len(purchases), LOAD_BATCH):
        batch = purchases[start : start + LOAD_BATCH]
        payloads = _accepted(runtime, batch)
        f2_persist.persist(runtime, payloads)
        lake_sink.sink(runtime, f"cdnow-{start}", payloads)
        _resolve_all(runtime)
    _say(
        verbose, f"loaded {len(purchases):,} CDNOW orders in {time.perf_counter() - started:.0f} s"
    )
    return {
        "orders": len(purchases),
        "revenue": sum((p.dollars for p in purchases), Decimal(0)),
        "customers": len({p.customer for p in purchases}),
        "per_day": Counter(p.day.isoformat() for p in purchases),
    }


def measure_cdnow(runtime: Runtime, expected: dict[str, Any], repeat: int) -> dict[str, Any]:
    """Cache hits, the store's part of the overview, and the lake queries, on CDNOW."""
    filters = Filters()
    answer = overview(runtime, filters)  # computed and cached once
    cache_ms = _times(lambda: overview(runtime, filters), repeat)
    db_ms = _times(lambda: _store_overview(runtime, filters), repeat)
    per_day_ms = _times(lambda: lake_event_counts(runtime, filters), max(10, repeat // 5))
    trends_ms = _times(lambda: lake_counts_by(runtime, filters, "type"), max(10, repeat // 5))
    hit = overview(runtime, filters)
    return {
        "cdnow_orders": expected["orders"],
        "cache_p50_ms": _p(cache_ms, 50),
        "cache_p99_ms": _p(cache_ms, 99),
        "db_p50_ms": _p(db_ms, 50),
        "db_p99_ms": _p(db_ms, 99),
        "cache_vs_db_ratio": round(_p(db_ms, 50) / _p(cache_ms, 50), 1),
        "cache_vs_db_p99_ratio": round(_p(db_ms, 99) / _p(cache_ms, 99), 1),
        "lake_p50_ms": _p(per_day_ms + trends_ms, 50),
        "lake_p99_ms": _p(per_day_ms + trends_ms, 99),
        "lake_overview_p99_ms": _p(per_day_ms, 99),
        "lake_trends_p99_ms": _p(trends_ms, 99),
        "checks": {
            "cdnow_events_total": answer["events_total"] == expected["orders"],
            "cdnow_revenue_total": answer["revenue_total"] == expected["revenue"],
            "cdnow_customers": answer["active_customers"] == expected["customers"],
            "cdnow_events_per_day": {p["period"]: p["events"] for p in answer["events"]}
            == dict(expected["per_day"]),
            "cache_hit_equals_computed": hit == answer,
            "lake_trends_total": sum(
                sum(points.values()) for points in lake_counts_by(runtime, filters, "type").values()
            )
            == expected["orders"],
        },
    }


def measure_generated(runtime: Runtime, lake: Any, repeat: int) -> dict[str, Any]:
    """The overview's events per day and the trends by type on the generated lake."""
    filters = Filters()
    per_day = lake_event_counts(runtime, filters)  # the first read also warms the file list
    by_type = lake_counts_by(runtime, filters, "type")
    per_day_ms = _times(lambda: lake_event_counts(runtime, filters), repeat)
    trends_ms = _times(lambda: lake_counts_by(runtime, filters, "type"), repeat)
    return {
        "lake_generated_events": lake.events,
        "lake_10m_overview_p50_ms": _p(per_day_ms, 50),
        "lake_10m_overview_p99_ms": _p(per_day_ms, 99),
        "lake_10m_trends_p50_ms": _p(trends_ms, 50),
        "lake_10m_trends_p99_ms": _p(trends_ms, 99),
    } | {
        "checks_generated": {
            "events_per_day": per_day == lake.per_day,
            "events_by_type": {k: sum(v.values()) for k, v in by_type.items()} == lake.per_key,
        }
    }


def render(report: dict[str, Any]) -> str:
    """The report for a terminal."""
    lines = [
        f"CDNOW orders loaded: {report['cdnow_orders']:,}; "
        f"generated lake: {report['lake_generated_events']:,} events",
        f"overview, cache hit       p50 {report['cache_p50_ms']:8.2f} ms"
        f"   p99 {report['cache_p99_ms']:8.2f} ms",
        f"overview, store (PG)      p50 {report['db_p50_ms']:8.2f} ms"
        f"   p99 {report['db_p99_ms']:8.2f} ms   cache is {report['cache_vs_db_ratio']}x faster",
        f"lake (CDNOW)              p50 {report['lake_p50_ms']:8.2f} ms"
        f"   p99 {report['lake_p99_ms']:8.2f} ms",
        f"lake (generated) per day  p50 {report['lake_10m_overview_p50_ms']:8.2f} ms"
        f"   p99 {report['lake_10m_overview_p99_ms']:8.2f} ms",
        f"lake (generated) trends   p50 {report['lake_10m_trends_p50_ms']:8.2f} ms"
        f"   p99 {report['lake_10m_trends_p99_ms']:8.2f} ms",
        f"answers checked: {'ok' if report['checks_ok'] else 'WRONG'} {report['checks']}",
        f"load average (1 min) at the end: {report['load_average_1m']} on {os.cpu_count()} cores",
    ]
    return "\n".join(lines)


def _store_overview(runtime: Runtime, filters: Filters) -> tuple:
    """The overview's questions to the profile store, uncached."""
    return (
        store_numbers(runtime, filters),
        new_profile_counts(runtime, filters),
        profiles_total(runtime),
    )


def _accepted(runtime: Runtime, purchases: list[cdnow.Purchase]) -> list[bytes]:
    events = [
        encode(
            {
                "type": "track",
                "event": "Order Completed",
                "userId": p.user_id,
                "messageId": p.message_id,
                "timestamp": p.timestamp.isoformat(),
                "properties": {"revenue": str(p.dollars), "quantity": p.quantity},
            }
        )
        for p in purchases
    ]
    ctx = IngestContext(source=SOURCE, received_at=datetime.now(UTC))
    result = ingest(ParsedRequest(events=events), ctx, runtime.settings, runtime.hooks)
    if result.rejected:
        raise SystemExit(f"F1 refused CDNOW events: {result.rejected[:3]}")
    return [encode(event) for event in result.accepted]


def _resolve_all(runtime: Runtime) -> None:
    """Feed everything F2 published to F3, acknowledging after."""
    while deliveries := runtime.bus.consume(ID_RESOLUTION, F3_GROUP, "bench", 100, 10):
        f3_resolve.resolve(runtime, [p for d in deliveries for p in d.payloads])
        runtime.bus.ack(F3_GROUP, deliveries)


def _times(call: Callable[[], Any], repeat: int) -> list[float]:
    found = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        found.append((time.perf_counter() - started) * 1000)
    return found


def _p(samples: list[float], percent: int) -> float:
    """The percentile by the nearest-rank method, in ms to two places."""
    ordered = sorted(samples)
    rank = max(1, -(-percent * len(ordered) // 100))
    return round(ordered[rank - 1], 2)


@contextmanager
def _engines() -> Iterator[Any]:
    """Settings on an embedded PostgreSQL and Valkey in a temporary folder, migrated."""
    with tempfile.TemporaryDirectory(prefix="c360-bench-analytics-") as folder:
        data_dir = Path(folder) / "data"
        postgres, valkey = EmbeddedPostgres(data_dir), EmbeddedValkey(data_dir)
        postgres.start()
        try:
            valkey.start()
            with psycopg.connect(postgres.dsn, autocommit=True) as conn:
                migrate.upgrade(conn)
            yield load_settings(
                {"data_dir": data_dir, "postgres_dsn": postgres.dsn, "valkey_url": valkey.url},
                environ={},
            )
        finally:
            valkey.stop()
            postgres.stop()


def _say(verbose: bool, text: str) -> None:
    if verbose:
        print(text, file=sys.stderr, flush=True)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a 1M-event lake, fewer repeats")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--lake-events", type=int, help="events in the generated lake")
    parser.add_argument("--cdnow-lines", type=int, help="CDNOW lines to load (default all)")
    parser.add_argument("--repeat", type=int, help="timed calls per cache / store figure")
    parser.add_argument(
        "--cache-dir", type=Path, default=DEFAULT_CACHE, help=f"generated lakes ({DEFAULT_CACHE})"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
