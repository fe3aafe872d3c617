"""The whole pipeline, on both stacks: sustained events per second and event -> profile delay
(p50, p95, p99) at 1,000 events/s and at the highest rate each stack holds, with the peak
memory of every process (gateway, workers, servers).

    python bench/pipeline.py            # both stacks: 1,000 events/s, then rising rates
    python bench/pipeline.py --quick    # both stacks at 1,000 events/s only, 8 s each
    python bench/pipeline.py --json     # one JSON object: per stack events_per_second and
                                        # freshness_p95_ms, and the detail

"embedded" is `c360 up`'s default engines; "servers" is the same appliance on the real local
servers `scripts/servers` runs (Kafka for the bus, Valkey over TCP with a password for the
cache and Dramatiq, PostgreSQL on TCP).
Each measurement is bench/freshness.py's: a paced open-loop sender, every acknowledged event
checked stored and resolved once, the bus floor measured beside it in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
from freshness import run as measure

from c360.appliance.servers import LocalServers

STACKS = ("embedded", "servers")
#: Rates tried after 1,000 events/s, in order, until one is not held.
RAMP = (2_000, 5_000, 10_000, 20_000)
#: A rate is held when the sender achieves this share of it and the pipeline has resolved
#: everything within this many seconds of the sender finishing.
HELD_SHARE = 0.95
HELD_CATCH_UP_S = 5.0
SAMPLE_S = 0.5


def main(argv: list[str] | None = None) -> int:
    """Measure the stacks asked for and print the report."""
    args = _parse(argv)
    duration = 8.0 if args.quick else args.duration
    report = {
        stack: measure_stack(stack, duration, ramp=not args.quick, verbose=not args.json)
        for stack in args.stacks.split(",")
    }
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0 if all(entry["checks_ok"] for entry in report.values()) else 1


def measure_stack(stack: str, duration_s: float, ramp: bool, verbose: bool) -> dict[str, Any]:
    """One stack: 1,000 events/s, then (with `ramp`) rising rates while they are held."""
    with _servers(stack) as servers, _PeakMemory() as peaks:
        base = measure(1_000, duration_s, verbose, servers)
        highest = base if _held(base) else None
        for rate in RAMP if ramp and highest else ():
            attempt = measure(rate, duration_s, verbose, servers)
            if not _held(attempt):
                break
            highest = attempt
    return {
        "events_per_second": highest["rate_achieved"] if highest else None,
        "freshness_p50_ms": base["freshness_p50_ms"],
        "freshness_p95_ms": base["freshness_p95_ms"],
        "freshness_p99_ms": base["freshness_p99_ms"],
        "highest_rate_held": highest["rate_asked"] if highest else None,
        "highest_rate_freshness_p95_ms": highest["freshness_p95_ms"] if highest else None,
        "baseline_p95_ms_at_1000": base["baseline_p95_ms"],
        "checks_ok": base["checks"]["ok"] and (highest is None or highest["checks"]["ok"]),
        "checks_at_1000": base["checks"],
        "peak_mb": peaks.by_process,
    }


def _held(report: dict[str, Any]) -> bool:
    return (
        report["checks"]["ok"]
        and report["rate_achieved"] >= HELD_SHARE * report["rate_asked"]
        and report["catch_up"]["seconds_after_send"] <= HELD_CATCH_UP_S
    )


@contextmanager
def _servers(stack: str) -> Iterator[dict[str, str] | None]:
    if stack == "embedded":
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="c360-pipeline-servers-") as folder:
        servers = LocalServers(Path(folder))
        servers.start()
        try:
            yield {
                "postgres_dsn": servers.postgres.dsn,
                "valkey_url": servers.valkey.url,
                "kafka_bootstrap": servers.kafka.bootstrap,
            }
        finally:
            servers.stop()


class _PeakMemory:
    """Samples the resident memory of every process below this one; the peak per process
    kind (its program and role), in MB."""

    def __init__(self) -> None:
        self.by_process: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> _PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(SAMPLE_S):
            for child in me.children(recursive=True):
                try:
                    name = _kind(child)
                    rss = child.memory_info().rss / 2**20
                except psutil.Error:
                    continue
                self.by_process[name] = round(max(self.by_process.get(name, 0.0), rss), 1)


def _kind(process: psutil.Process) -> str:
    command = process.cmdline()
    for role in ("gateway", "worker", "sender", "floor-producer"):
        if role in command:
            return f"c360 {role}"
    return process.name()


def render(report: dict[str, Any]) -> str:
    """The report for a terminal."""
    lines = [f"{'stack':10}{'events/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}  peak MB"]
    for stack, entry in report.items():
        peaks = ", ".join(f"{name} {mb:.0f}" for name, mb in sorted(entry["peak_mb"].items()))
        rate = entry["events_per_second"]
        lines.append(
            f"{stack:10}{(f'{rate:,.0f}' if rate else '-'):>10}"
            f"{_ms(entry['freshness_p50_ms']):>9}{_ms(entry['freshness_p95_ms']):>9}"
            f"{_ms(entry['freshness_p99_ms']):>9}  {peaks}"
        )
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1,000 events/s only, 8 s")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per rate (20)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--stacks", default=",".join(STACKS), help=f"of {STACKS}")
    args = parser.parse_args(argv)
    unknown = set(args.stacks.split(",")) - set(STACKS)
    if unknown:
        parser.error(f"unknown stack(s) {sorted(unknown)}; choose from {STACKS}")
    if not 1 <= args.duration <= 600:
        parser.error("--duration must be 1..600 seconds")
    return args


if __name__ == "__main__":
    sys.exit(main())
