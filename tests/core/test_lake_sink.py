"""The lake sink on real Parquet files, PostgreSQL's lake index and chdb: each event exactly
once."""

from __future__ import annotations

import os
from collections import Counter
from datetime import UTC, date, datetime

import pyarrow.dataset as ds
import pyarrow.parquet as pq

from c360.adapters.lake_parquet import LocalParquetLake
from c360.events.f1 import IngestContext, ParsedRequest, ingest
from c360.events.model import encode
from c360.stages import lake_sink

DAY_ONE = datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC)
DAY_TWO = datetime(2026, 3, 2, 0, 0, 1, tzinfo=UTC)


def payloads(runtime, *events: dict, received_at: datetime = DAY_ONE) -> list[bytes]:
    ctx = IngestContext(source="web", received_at=received_at)
    result = ingest(
        ParsedRequest(events=[encode(e) for e in events]), ctx, runtime.settings, runtime.hooks
    )
    assert not result.rejected, result.rejected
    return [encode(event) for event in result.accepted]


def tracks(*message_ids: str) -> list[dict]:
    return [
        {"type": "track", "event": "Viewed", "userId": "u-1", "messageId": m} for m in message_ids
    ]


def files(runtime) -> list[str]:
    root = runtime.settings.lake_dir
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def ids_via_pyarrow(runtime) -> Counter:
    found: Counter = Counter()
    for path in runtime.settings.lake_dir.rglob("*.parquet"):
        found.update(pq.read_table(path, columns=["message_id"]).column("message_id").to_pylist())
    return found


def ids_via_chdb(runtime) -> Counter:
    rows = runtime.lake_query.query("SELECT message_id, count() FROM {lake} GROUP BY message_id")
    return Counter(dict(rows))


def count_via_chdb(runtime) -> int:
    rows = runtime.lake_query.query("SELECT count() FROM {lake}")
    return int(rows[0][0]) if rows else 0


def test_a_batch_written_twice_under_the_same_name_holds_each_event_once(runtime):
    batch = payloads(runtime, *tracks("m-1", "m-2", "m-3"))

    lake_sink.sink(runtime, "p0-1-1", batch)
    lake_sink.sink(runtime, "p0-1-1", batch)

    assert ids_via_pyarrow(runtime) == Counter({"m-1": 1, "m-2": 1, "m-3": 1})
    assert ids_via_chdb(runtime) == Counter({"m-1": 1, "m-2": 1, "m-3": 1})
    assert count_via_chdb(runtime) == 3


def test_the_same_events_under_another_batch_name_are_not_written_again(runtime):
    batch = payloads(runtime, *tracks("m-1", "m-2"))
    lake_sink.sink(runtime, "p0-1-1", batch)

    written = lake_sink.sink(runtime, "p0-2-2", batch)

    assert written == 0
    assert ids_via_pyarrow(runtime) == Counter({"m-1": 1, "m-2": 1})
    assert count_via_chdb(runtime) == 2
    assert all("p0-2-2" not in name for name in files(runtime))


def test_overlapping_batches_and_replays_in_any_order_leave_each_event_once(runtime):
    first = payloads(runtime, *tracks("m-1", "m-2", "m-3"))
    second = payloads(runtime, *tracks("m-3", "m-4"))
    third = payloads(runtime, *tracks("m-1", "m-4", "m-5", "m-5"))

    for name, batch in [
        ("a", first),
        ("b", second),
        ("a", first),
        ("c", third),
        ("b", second),
        ("c", third),
        ("a", first),
    ]:
        lake_sink.sink(runtime, name, batch)

    expected = Counter({f"m-{n}": 1 for n in range(1, 6)})
    assert ids_via_pyarrow(runtime) == expected
    assert ids_via_chdb(runtime) == expected


def test_duplicates_inside_one_batch_are_written_once(runtime):
    batch = payloads(runtime, *tracks("m-1", "m-1", "m-2"))

    lake_sink.sink(runtime, "dup", batch)

    assert ids_via_pyarrow(runtime) == Counter({"m-1": 1, "m-2": 1})


def test_partitions_are_named_by_receipt_day_and_event_type(runtime):
    day_one = payloads(
        runtime,
        {"type": "track", "event": "E", "userId": "u-1", "messageId": "t-1"},
        {"type": "identify", "userId": "u-1", "messageId": "i-1"},
        received_at=DAY_ONE,
    )
    day_two = payloads(
        runtime, {"type": "page", "anonymousId": "a-1", "messageId": "p-1"}, received_at=DAY_TWO
    )

    lake_sink.sink(runtime, "b1", day_one + day_two)

    assert files(runtime) == [
        "dt=2026-03-01/event_type=identify/b1.parquet",
        "dt=2026-03-01/event_type=track/b1.parquet",
        "dt=2026-03-02/event_type=page/b1.parquet",
    ]
    rows = runtime.lake_query.query("SELECT dt, event_type, message_id FROM {lake} ORDER BY 3")
    assert [(d, t, m) for d, t, m in rows] == [
        (date(2026, 3, 1), "identify", "i-1"),
        (date(2026, 3, 2), "page", "p-1"),
        (date(2026, 3, 1), "track", "t-1"),
    ]
    hive = ds.dataset(runtime.settings.lake_dir, format="parquet", partitioning="hive").to_table()
    assert sorted(hive.column("event_type").to_pylist()) == ["identify", "page", "track"]


def test_no_temporary_files_are_left_behind(runtime):
    batch = payloads(runtime, *tracks("m-1", "m-2"))

    lake_sink.sink(runtime, "b1", batch)
    lake_sink.sink(runtime, "b1", batch)
    lake_sink.sink(runtime, "b2", batch)

    names = files(runtime)
    assert names == ["dt=2026-03-01/event_type=track/b1.parquet"]
    assert not [n for n in names if os.path.basename(n).startswith(".") or n.endswith(".tmp")]


def test_the_lake_keeps_the_event_payload_and_times(runtime):
    batch = payloads(
        runtime,
        {
            "type": "track",
            "event": "Order Completed",
            "userId": "u-1",
            "messageId": "m-1",
            "timestamp": "2026-02-28T10:00:00.123Z",
            "properties": {"revenue": "12.30", "note": "Trần"},
        },
    )

    lake_sink.sink(runtime, "b1", batch)

    (row,) = runtime.lake_query.query(
        "SELECT timestamp, received_at, JSONExtractString(payload, 'properties', 'note')"
        " FROM {lake}"
    )
    assert _utc(row[0]) == datetime(2026, 2, 28, 10, 0, 0, 123000, tzinfo=UTC)
    assert _utc(row[1]) == DAY_ONE
    assert row[2] == "Trần"


def test_an_empty_lake_reads_as_no_rows(runtime):
    assert runtime.lake_query.query("SELECT count() FROM {lake}") == []


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _index(runtime) -> set[tuple[str, str, str]]:
    with runtime.pool.connection() as conn:
        return set(conn.execute("SELECT source, message_id, file FROM lake_index").fetchall())


def test_a_lost_index_is_rebuilt_from_the_files_so_a_replay_writes_nothing_again(runtime):
    batch = payloads(runtime, *tracks("m-1", "m-2"))
    lake_sink.sink(runtime, "b1", batch)
    before = _index(runtime)
    with runtime.pool.connection() as conn:
        conn.execute("TRUNCATE lake_index")  # as `c360 migrate --down 0` then `up` leaves it

    with runtime.pool.connection() as conn:
        indexed = lake_sink.rebuild_index(conn, runtime.lake)
    written = lake_sink.sink(runtime, "b2", batch)

    assert indexed == 2
    assert _index(runtime) == before
    assert written == 0
    assert ids_via_pyarrow(runtime) == Counter({"m-1": 1, "m-2": 1})


def test_rebuilding_a_complete_index_reads_no_file_and_changes_nothing(runtime, tmp_path):
    lake_sink.sink(runtime, "b1", payloads(runtime, *tracks("m-1")))
    stray = runtime.settings.lake_dir / "dt=2026-03-01" / "event_type=track" / ".b9.parquet.tmp"
    stray.write_bytes(b"half a file")

    with runtime.pool.connection() as conn:
        assert lake_sink.rebuild_index(conn, runtime.lake) == 0
        assert lake_sink.rebuild_index(conn, LocalParquetLake(tmp_path / "empty")) == 0
