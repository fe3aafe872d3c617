"""Reliability under faults, measured: a steady load through the appliance on the real local
servers while a worker, the gateway and the Kafka broker are killed with SIGKILL in turn and
restarted; prints, per kill, how long the pipeline took to catch up.

    python bench/faults.py              # 250 events/s, about two minutes
    python bench/faults.py --rate 500   # another steady rate
    python bench/faults.py --json       # one JSON object on stdout

Catch-up is measured from the restart until every event acknowledged before it is resolved
into its profile (and, separately, in the lake). Every acknowledged event is also checked:
in the lake exactly once, counted exactly once in its customer's profile. The run fails (exit
status 1) on any problem found.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from _faults import Plan, run, summary_line


def main(argv: list[str] | None = None) -> int:
    """Run the scenario in a temporary folder and print the report."""
    args = _parse(argv)
    plan = Plan(rate=args.rate, workers=args.workers)
    with tempfile.TemporaryDirectory(prefix="c360-faults-") as folder:
        result = run(Path(folder), plan, say=None if args.json else _say)
    print(json.dumps(result, indent=2, default=str) if args.json else render(result))
    return 0 if not result["problems"] else 1


def render(result: dict[str, Any]) -> str:
    """The report for a terminal."""
    lines = [
        "seconds from each restart: until the part answers (ready), until every event "
        "acknowledged before it is in a profile and in the lake, until the first new 200, and "
        "until the first new event is in a profile",
        f"{'kill':9}{'down':>7}{'ready':>7}{'pending':>9}{'profiles':>10}{'lake':>7}"
        f"{'first 200':>11}{'first profile':>15}",
    ]
    for fault in result["faults"]:
        lines.append(
            f"{fault['fault']:9}{fault['down_s']:>7}{_text(fault['ready_s']):>7}"
            f"{fault['pending_at_restart']:>9}{_text(fault['catch_up_profiles_s']):>10}"
            f"{_text(fault['catch_up_lake_s']):>7}"
            f"{_text(fault['first_ack_after_restart_s']):>11}"
            f"{_text(fault['first_profile_update_after_restart_s']):>15}"
        )
    probes = ", ".join(f"{p['status']} in {p['seconds']} s" for p in result["broker_down_probes"])
    lines += [
        summary_line(result),
        f"answers: {result['statuses']}; while the broker was down: {probes}",
        f"drained {result['drain_s']} s after the load stopped",
        "problems: " + ("; ".join(result["problems"]) or "none"),
    ]
    return "\n".join(lines)


def _text(value: float | None) -> str:
    return "-" if value is None else f"{value}"


def _say(text: str) -> None:
    print(f"... {text}", file=sys.stderr, flush=True)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=250, help="events per second (250)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    if not 1 <= args.rate <= 5_000 or not 1 <= args.workers <= 4:
        parser.error("--rate must be 1..5000 and --workers 1..4")
    return args


if __name__ == "__main__":
    sys.exit(main())
