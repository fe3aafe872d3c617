"""Identity resolution, c360 beside Splink 5 on the same records in the same run: FEBRL 3
and 4, Fodors-Zagat (real data with ground truth) and a million generated customer records.

    python bench/identity.py --quick          # FEBRL 3, FEBRL 4, Fodors-Zagat: about a minute
    python bench/identity.py                  # also 1,000,000 records and incremental matching
    python bench/identity.py --json           # one JSON object on stdout
    python bench/identity.py --datasets febrl4,synthetic_1m --records 100000

Each matcher runs in its own child process, so its peak memory is its own; metrics are
computed there too. Exit status: 0 done, 1 a matcher failed, 2 data could not be fetched.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import multiprocessing
import os
import resource
import sys
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import identity_data
import identity_generate
import numpy
from _identity_common import Dataset, Prediction
from _identity_metrics import (
    clustered,
    clusters_from_pairs,
    cross_source,
    pair_completeness,
    pairwise,
)

EXIT_OK = 0
EXIT_MATCHER_FAILED = 1
EXIT_NO_DATA = 2

DATASETS = ("febrl3", "febrl4", "fodors_zagat", "synthetic_1m")
#: What --quick leaves out: the million-record runs.
LARGE_DATASETS = frozenset({"synthetic_1m"})
#: Matcher name -> module in bench/ with `run(dataset: Dataset) -> Prediction`.
MATCHERS = {"c360": "_c360_runner", "splink": "_splink_runner"}
INCREMENTAL_MODULE = "_c360_incremental"
#: Fewest generated records worth matching (and enough for 1,000 incremental queries).
MIN_RECORDS = 2_000

BENCH = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    names = _chosen(args)
    try:
        datasets = {name: _load(name, args.records) for name in names}
    except identity_data.FetchError as exc:
        print(f"identity: the data could not be fetched: {exc}", file=sys.stderr)
        return EXIT_NO_DATA

    results: dict[str, Any] = {}
    table = _Table(enabled=not args.json)
    for name, dataset in datasets.items():
        results[name] = _compare(dataset, table)
    if not args.quick:
        results["incremental"] = _incremental(datasets, args.records)
    table.footer(results)

    if args.json:
        print(json.dumps(results, indent=2))
    failed = any("error" in entry.get(m, {}) for entry in results.values() for m in MATCHERS)
    return EXIT_MATCHER_FAILED if failed else EXIT_OK


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="\n".join(__doc__.splitlines()[2:7]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="skip the million-record runs")
    parser.add_argument(
        "--datasets", default=",".join(DATASETS), help=f"comma-separated, of {DATASETS}"
    )
    parser.add_argument(
        "--records",
        type=int,
        default=identity_generate.DEFAULT_RECORDS,
        help="size of the generated dataset (default 1,000,000)",
    )
    args = parser.parse_args(argv)
    unknown = set(args.datasets.split(",")) - set(DATASETS)
    if unknown:
        parser.error(f"unknown dataset(s) {', '.join(sorted(unknown))}; choose from {DATASETS}")
    if args.records < MIN_RECORDS:
        parser.error(f"--records must be at least {MIN_RECORDS:,}; got {args.records:,}")
    return args


def _chosen(args: argparse.Namespace) -> list[str]:
    names = [name for name in DATASETS if name in args.datasets.split(",")]
    if args.quick:
        skipped = [name for name in names if name in LARGE_DATASETS]
        if skipped:
            _note(f"--quick: skipping {', '.join(skipped)} and the incremental benchmark")
        names = [name for name in names if name not in LARGE_DATASETS]
    return names


def _load(name: str, records: int) -> Dataset:
    if name not in LARGE_DATASETS:
        return identity_data.load(name)
    started = time.perf_counter()
    dataset = identity_generate.generate(records)
    _note(f"generated {records:,} records in {time.perf_counter() - started:.1f} s")
    return dataset


def _compare(dataset: Dataset, table: _Table) -> dict[str, Any]:
    """Both matchers on one dataset, each in a fresh process."""
    entry: dict[str, Any] = {
        "records": len(dataset.records),
        "true_pairs": len(dataset.truth_left),
    }
    for matcher, module in MATCHERS.items():
        _note(f"{dataset.name}: running {matcher}")
        entry[matcher] = _in_child(_run_matcher, module, dataset)
        table.row(dataset.name, matcher, entry[matcher])
    return entry


def _incremental(datasets: dict[str, Dataset], records: int) -> dict[str, Any]:
    """c360's one-record-against-all latency, when its module exists."""
    if importlib.util.find_spec(INCREMENTAL_MODULE) is None:
        _note(f"bench/{INCREMENTAL_MODULE}.py does not exist yet: incremental benchmark skipped")
        return {"skipped": f"bench/{INCREMENTAL_MODULE}.py not found"}
    dataset = datasets.get("synthetic_1m") or _load("synthetic_1m", records)
    _note("incremental: running c360")
    return _in_child(_run_incremental, INCREMENTAL_MODULE, dataset)


# -- child processes -------------------------------------------------------------------


def _in_child(target: Any, module: str, dataset: Dataset) -> dict[str, Any]:
    """Run `target(module, dataset, connection)` in a spawned process; its answer, or an
    error entry if it raised or died."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=target, args=(module, dataset, sender))
    child.start()
    sender.close()
    try:
        answer: dict[str, Any] = receiver.recv()
    except EOFError:
        answer = {"error": "the child process died without an answer (out of memory?)"}
    child.join()
    if "error" in answer:
        _note(f"{module} failed:\n{answer['error']}")
    return answer


def _run_matcher(module: str, dataset: Dataset, connection: Connection) -> None:
    """In the child: run one matcher and send back its scores."""
    _quiet_stdout()
    try:
        rss_before = _peak_mb()
        prediction = importlib.import_module(module).run(dataset)
        answer = score(dataset, prediction)
        answer["peak_mb"] = round(_peak_mb(), 1)
        answer["rss_before_mb"] = round(rss_before, 1)
    except Exception:
        answer = {"error": traceback.format_exc()}
    connection.send(answer)
    connection.close()


def _run_incremental(module: str, dataset: Dataset, connection: Connection) -> None:
    _quiet_stdout()
    try:
        answer = dict(importlib.import_module(module).run(dataset))
        answer["peak_mb"] = round(_peak_mb(), 1)
    except Exception:
        answer = {"error": traceback.format_exc()}
    connection.send(answer)
    connection.close()


def _quiet_stdout() -> None:
    # Whatever a matcher prints goes to stderr: stdout carries only the report (or JSON).
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())


def _peak_mb() -> float:
    """The most memory this process has held at once, in MB. VmHWM, not ru_maxrss: Linux
    carries ru_maxrss over from the parent through fork and exec, so a spawned child would
    start at the harness's own peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- scores ----------------------------------------------------------------------------


def score(dataset: Dataset, prediction: Prediction) -> dict[str, Any]:
    """Pairwise and cluster scores of a prediction; a link task counts cross-source pairs
    only (pairs inside one source are not asked for)."""
    n = len(dataset.records)
    source = _sources(dataset)
    left, right = prediction.left, prediction.right
    if source is not None:
        left, right = cross_source(left, right, source)
    pairs = pairwise(left, right, dataset.truth_left, dataset.truth_right)

    predicted_clusters = prediction.clusters
    if predicted_clusters is None:
        predicted_clusters = clusters_from_pairs(n, prediction.left, prediction.right)
    true_clusters = clusters_from_pairs(n, dataset.truth_left, dataset.truth_right)
    clusters = clustered(predicted_clusters, true_clusters, source)

    answer: dict[str, Any] = {
        "precision": round(pairs.precision, 6),
        "recall": round(pairs.recall, 6),
        "f1": round(pairs.f1, 6),
        "seconds": round(prediction.seconds, 3),
        "predicted_pairs": pairs.predicted,
        "pair_completeness": None,
        "clusters": {k: round(v, 6) for k, v in _rates(clusters).items()},
        "setup": prediction.setup,
    }
    if prediction.candidates is not None:
        candidates = prediction.candidates
        answer["pair_completeness"] = round(
            pair_completeness(*candidates, dataset.truth_left, dataset.truth_right), 6
        )
        answer["candidate_pairs"] = len(candidates[0])
    return answer


def _sources(dataset: Dataset) -> numpy.ndarray | None:
    """Source label per unique_id for a link task (unique_ids are row numbers)."""
    if not dataset.link_only:
        return None
    records = dataset.records
    source = numpy.empty(len(records), dtype=object)
    source[records["unique_id"].to_numpy()] = records["source_dataset"].to_numpy()
    return source


def _rates(scores: Any) -> dict[str, float]:
    return {"precision": scores.precision, "recall": scores.recall, "f1": scores.f1}


# -- report ----------------------------------------------------------------------------


class _Table:
    """The human-readable report, a row as each matcher finishes."""

    HEADER = (
        f"{'dataset':<14}{'matcher':<8}{'precision':>10}{'recall':>9}{'f1':>9}"
        f"{'pairs compl.':>13}{'cluster f1':>11}{'seconds':>9}{'peak MB':>9}"
    )

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.started = False

    def row(self, dataset: str, matcher: str, entry: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if not self.started:
            print(self.HEADER, flush=True)
            self.started = True
        if "error" in entry:
            print(f"{dataset:<14}{matcher:<8} failed (see stderr)", flush=True)
            return
        completeness = entry.get("pair_completeness")
        shown = f"{completeness:.4f}" if completeness is not None else "-"
        print(
            f"{dataset:<14}{matcher:<8}{entry['precision']:>10.4f}{entry['recall']:>9.4f}"
            f"{entry['f1']:>9.4f}{shown:>13}{entry['clusters']['f1']:>11.4f}"
            f"{entry['seconds']:>9.1f}{entry['peak_mb']:>9.0f}",
            flush=True,
        )

    def footer(self, results: dict[str, Any]) -> None:
        if not self.enabled:
            return
        print()
        for name, entry in results.items():
            if name == "incremental":
                print(f"incremental: {json.dumps(entry)}")
                continue
            for matcher in MATCHERS:
                setup = entry.get(matcher, {}).get("setup")
                if setup:
                    print(f"{name} {matcher}: {setup}")


def _note(message: str) -> None:
    print(f"identity: {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
