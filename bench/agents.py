"""The agents' benchmark: intent recognition beside a TF-IDF baseline (_agents_intents),
knowledge search over the Cambridge venues and HNSW recall (_agents_search), and the
template reply's latency end to end through web chat (_agents_reply).

    python bench/agents.py               # every part, full size
    python bench/agents.py --quick       # MultiWOZ subsampled, 10,000 vectors, fewer turns
    python bench/agents.py --json        # one JSON object on stdout

Data comes from the package index into fixtures/agents/ (bench/agents_data.py); embeddings
are cached there too. The exit status is 1 when a check fails (c360 less accurate than the
baseline, no better at out-of-scope recall, hybrid search behind vector or text search) or
when a part could not run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from typing import Any

#: The parts, in the order they run: module name under bench/ and what it measures.
PARTS = {
    "intents": "_agents_intents",
    "search": "_agents_search",
    "reply": "_agents_reply",
}
EXIT_CHECK_FAILED = 1


def main(argv: list[str] | None = None) -> int:
    """Run every part, print the figures, exit 1 when a check fails."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="example: python bench/agents.py --quick --json",
    )
    parser.add_argument("--quick", action="store_true", help="smaller data, a few minutes")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)

    report = run(args.quick)
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else render(report))
    return 0 if all(report["checks"].values()) else EXIT_CHECK_FAILED


def run(quick: bool) -> dict[str, Any]:
    """Every part's figures merged into one report, with the checks and each part's time."""
    report: dict[str, Any] = {"quick": quick, "seconds": {}, "errors": {}}
    for part, module in PARTS.items():
        started = time.monotonic()
        report |= _run_part(part, module, quick, report["errors"])
        report["seconds"][part] = round(time.monotonic() - started, 1)
    report["checks"] = checks(report)
    return report


def _run_part(part: str, module: str, quick: bool, errors: dict[str, str]) -> dict[str, Any]:
    """One part's figures; a part that is missing or fails leaves its reason in `errors`,
    so the other parts still report."""
    try:
        return importlib.import_module(module).run(quick)
    except Exception as exc:  # a failing part must not hide the others' figures
        traceback.print_exc(file=sys.stderr)
        errors[part] = f"{type(exc).__name__}: {exc}"
        return {}


def checks(report: dict[str, Any]) -> dict[str, bool]:
    """The issue's claims as booleans; a figure that is absent fails its check."""
    out = {}
    for name in ("mindmeld", "multiwoz"):
        ours, theirs = _pair(report, "intent_accuracy", "baseline_accuracy", name)
        out[f"accuracy_at_least_baseline_{name}"] = ours is not None and ours >= theirs
        ours, theirs = _pair(report, "oos_recall", "baseline_oos_recall", name)
        out[f"oos_recall_above_baseline_{name}"] = ours is not None and ours > theirs
    ndcg = report.get("ndcg_at_10") or {}
    hybrid = ndcg.get("hybrid")
    for other in ("vector", "text"):
        out[f"hybrid_at_least_{other}"] = (
            hybrid is not None and ndcg.get(other) is not None and hybrid >= ndcg[other]
        )
    out["every_part_ran"] = not report.get("errors")
    return out


def _pair(report: dict[str, Any], ours: str, theirs: str, name: str) -> tuple[Any, Any]:
    mine, baseline = report.get(ours, {}).get(name), report.get(theirs, {}).get(name)
    return (mine, baseline) if mine is not None and baseline is not None else (None, None)


def render(report: dict[str, Any]) -> str:
    """The figures as a short text table, then the checks."""
    lines = ["intent recognition        c360    baseline"]
    for name in ("mindmeld", "multiwoz"):
        for label, ours, theirs in (
            ("accuracy", "intent_accuracy", "baseline_accuracy"),
            ("out-of-scope recall", "oos_recall", "baseline_oos_recall"),
        ):
            mine, baseline = _pair(report, ours, theirs, name)
            lines.append(f"  {name:9s} {label:20s} {_num(mine)}  {_num(baseline)}")
    lines.append(f"  Vietnamese translations recognised: {_num(report.get('vi_transfer'))}")
    lines.append("search")
    for method, value in (report.get("ndcg_at_10") or {}).items():
        lines.append(f"  nDCG@10 {method:8s} {_num(value)}")
    for key in ("hnsw_recall_at_10", "search_p50_ms", "search_p99_ms", "reply_p95_ms"):
        lines.append(f"  {key:22s} {_num(report.get(key))}")
    for part, error in report["errors"].items():
        lines.append(f"ERROR in {part}: {error}")
    lines += [f"{'ok  ' if ok else 'FAIL'} {name}" for name, ok in report["checks"].items()]
    return "\n".join(lines)


def _num(value: Any) -> str:
    return f"{value:7.4f}" if isinstance(value, int | float) else f"{'-':>7s}"


if __name__ == "__main__":
    sys.exit(main())
