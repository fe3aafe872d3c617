"""The raw lake role's contract (issue 4): one set of tests run on the local Parquet folder and
on an S3 bucket (SeaweedFS's S3 gateway, started by the project's own
`c360.appliance.servers`, a fresh bucket per test). What a lake wrote is read back with pyarrow
apart from the adapter, from the file or from the object's bytes, and through chdb.

SeaweedFS does server-side encryption and lifecycle rules, so the paths where a server refuses
them run against a small stand-in on 127.0.0.1 that answers S3 requests the way such a server
does (MinIO without a KMS answers an encrypted PUT with `NotImplemented`).
"""

from __future__ import annotations

import http.server
import io
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from minio import Minio
from minio.commonconfig import ENABLED, Filter
from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule

from c360.adapters.lake import Lake
from c360.adapters.lake_parquet import SCHEMA, LocalParquetLake
from c360.adapters.lake_s3 import RETENTION_RULE_ID, S3Lake
from c360.appliance.engines import free_port
from c360.appliance.servers import SeaweedServer
from c360.errors import AdapterError
from c360.events.model import Event, encode
from c360.runtime import Runtime
from c360.settings import load_settings

pytestmark = pytest.mark.timeout(120)

DAY_ONE = datetime(2026, 12, 4, 23, 59, 59, 500_000, tzinfo=UTC)
DAY_TWO = datetime(2026, 12, 5, 0, 0, 1, tzinfo=UTC)

_chdb: Any = None


@dataclass
class Subject:
    """A lake of one kind, with ways to see and touch its storage without the adapter."""

    kind: str
    lake: Lake
    stored: Callable[[str], bytes]
    put_beside: Callable[[str, bytes], None]
    leave_half_written: Callable[[str], None]


@pytest.fixture(params=["local", "s3"])
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Subject:
    """An empty lake of each kind."""
    if request.param == "local":
        return _local_subject(tmp_path / "lake")
    return _s3_subject(request.getfixturevalue("s3_server"))


def _local_subject(root: Path) -> Subject:
    def stored(name: str) -> bytes:
        return (root / name).read_bytes()

    def put_beside(name: str, data: bytes) -> None:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)

    def leave_half_written(name: str) -> None:
        # what a crash between writing and renaming leaves behind
        path = root / name
        put_beside(str(path.with_name(f".{path.name}.tmp").relative_to(root)), b"PAR1 half")

    lake = LocalParquetLake(root)
    return Subject("local", lake, stored, put_beside, leave_half_written)


def _s3_subject(server: SeaweedServer) -> Subject:
    bucket = _fresh_bucket()
    client = _client(server)
    lake = S3Lake(server.endpoint, bucket, server.access_key, server.secret_key)

    def stored(name: str) -> bytes:
        response = client.get_object(bucket, name)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def put_beside(name: str, data: bytes) -> None:
        client.put_object(bucket, name, io.BytesIO(data), len(data))

    def leave_half_written(name: str) -> None:
        # an upload begun and never completed, and one aborted: neither is an object yet
        for abort in (False, True):
            upload_id = client._create_multipart_upload(bucket, name, {})
            client._upload_part(bucket, name, b"x" * 5 * 1024 * 1024, None, upload_id, 1)
            if abort:
                client._abort_multipart_upload(bucket, name, upload_id)

    lake.files()  # creates the bucket
    return Subject("s3", lake, stored, put_beside, leave_half_written)


def _fresh_bucket() -> str:
    return f"lake-{uuid.uuid4().hex[:12]}"


def _client(server: SeaweedServer) -> Minio:
    return Minio(
        f"127.0.0.1:{server.port}",
        access_key=server.access_key,
        secret_key=server.secret_key,
        secure=False,
    )


def _event(message_id: str, type_: str = "track", received_at: datetime = DAY_ONE) -> Event:
    return Event(
        message_id=message_id,
        type=type_,
        source="web",
        customer_key=f"user:u-{message_id}",
        received_at=received_at,
        timestamp=datetime(2026, 12, 4, 10, 0, 0, 123_000, tzinfo=UTC),
        user_id=f"u-{message_id}",
        event="Order Completed" if type_ == "track" else None,
        properties={"note": "Trần", "revenue": "12.30"},
    )


def _rows(subject: Subject, name: str) -> list[dict[str, Any]]:
    """The rows of one lake file, read by pyarrow from the bytes as stored."""
    table = pq.read_table(io.BytesIO(subject.stored(name)))
    assert table.schema.equals(SCHEMA)
    return table.to_pylist()


def _chdb_rows(sql: str) -> list[tuple]:
    """chdb runs one engine per process: every test of this module shares one client."""
    global _chdb
    if _chdb is None:
        import clickhouse_connect

        _chdb = clickhouse_connect.get_client(dsn="chdb://memory")
    return list(_chdb.query(sql).result_rows)


def test_written_events_read_back_the_same_from_the_stored_bytes(subject):
    events = [_event("m-1"), _event("m-2"), _event("i-1", "identify")]

    subject.lake.write("b1", events)

    rows = _rows(subject, "dt=2026-12-04/event_type=track/b1.parquet")
    assert [row["message_id"] for row in rows] == ["m-1", "m-2"]
    first = rows[0]
    assert (first["source"], first["type"], first["event"]) == ("web", "track", "Order Completed")
    assert (first["customer_key"], first["user_id"], first["anonymous_id"]) == (
        "user:u-m-1",
        "u-m-1",
        None,
    )
    assert first["timestamp"] == datetime(2026, 12, 4, 10, 0, 0, 123_000, tzinfo=UTC)
    assert first["received_at"] == DAY_ONE
    assert first["payload"] == encode(events[0]).decode()
    (identify,) = _rows(subject, "dt=2026-12-04/event_type=identify/b1.parquet")
    assert identify["message_id"] == "i-1"


def test_files_are_named_by_receipt_day_event_type_and_batch(subject):
    events = [_event("m-1"), _event("i-1", "identify"), _event("p-1", "page", DAY_TWO)]

    written = subject.lake.write("p0-1-7", events)

    expected = [
        "dt=2026-12-04/event_type=identify/p0-1-7.parquet",
        "dt=2026-12-04/event_type=track/p0-1-7.parquet",
        "dt=2026-12-05/event_type=page/p0-1-7.parquet",
    ]
    assert written == expected
    assert subject.lake.files() == expected


def test_rewriting_a_batch_replaces_its_file_and_doubles_no_row(subject):
    name = "dt=2026-12-04/event_type=track/b1.parquet"
    subject.lake.write("b1", [_event("m-1"), _event("m-2")])

    subject.lake.write("b1", [_event("m-1"), _event("m-2")])
    assert [row["message_id"] for row in _rows(subject, name)] == ["m-1", "m-2"]
    subject.lake.write("b1", [_event("m-3")])

    assert [row["message_id"] for row in _rows(subject, name)] == ["m-3"]
    assert subject.lake.files() == [name]


def test_half_written_files_and_files_outside_the_layout_are_not_listed(subject):
    subject.lake.write("b1", [_event("m-1")])
    subject.leave_half_written("dt=2026-12-04/event_type=track/b2.parquet")
    subject.put_beside("elsewhere/b3.parquet", b"PAR1 not the lake's")
    subject.put_beside("dt=2026-12-04/event_type=track/notes.txt", b"not Parquet")

    assert subject.lake.files() == ["dt=2026-12-04/event_type=track/b1.parquet"]


def test_read_keys_gives_source_and_message_id_of_every_row(subject):
    subject.lake.write("b1", [_event("m-2"), _event("m-1"), _event("i-1", "identify")])

    keys = subject.lake.read_keys("dt=2026-12-04/event_type=track/b1.parquet")

    assert keys == [("web", "m-2"), ("web", "m-1")]


def test_an_empty_lake_has_no_files_and_no_clickhouse_source(subject):
    assert subject.lake.files() == []
    assert subject.lake.clickhouse_source() is None


def test_chdb_reads_every_file_through_the_clickhouse_source(subject):
    subject.lake.write("b1", [_event("m-1"), _event("i-1", "identify")])
    subject.lake.write("b2", [_event("m-2"), _event("p-1", "page", DAY_TWO)])

    source = subject.lake.clickhouse_source()
    assert source is not None
    rows = _chdb_rows(
        f"SELECT dt, event_type, message_id, JSONExtractString(payload, 'properties', 'note')"
        f" FROM {source} ORDER BY message_id"
    )

    assert rows == [
        (date(2026, 12, 4), "identify", "i-1", "Trần"),
        (date(2026, 12, 4), "track", "m-1", "Trần"),
        (date(2026, 12, 4), "track", "m-2", "Trần"),
        (date(2026, 12, 5), "page", "p-1", "Trần"),
    ]


def test_the_local_source_is_the_file_function_over_the_root(tmp_path):
    lake = LocalParquetLake(tmp_path)
    lake.write("b1", [_event("m-1")])

    assert lake.clickhouse_source() == f"file('{tmp_path}/**/*.parquet', Parquet)"


def test_the_s3_source_is_the_s3_function_with_the_lakes_keys(s3_server):
    lake = S3Lake(s3_server.endpoint, _fresh_bucket(), s3_server.access_key, s3_server.secret_key)
    lake.write("b1", [_event("m-1")])

    assert lake.clickhouse_source() == (
        f"s3('{s3_server.endpoint}/{lake.bucket}/**/*.parquet', '{s3_server.access_key}', "
        f"'{s3_server.secret_key}', 'Parquet')"
    )


def test_quotes_in_a_path_cannot_break_out_of_the_sql_string(tmp_path):
    lake = LocalParquetLake(tmp_path / "it's")
    lake.write("b1", [_event("m-1")])

    source = lake.clickhouse_source()

    assert source == f"file('{tmp_path}/it\\'s/**/*.parquet', Parquet)"
    assert _chdb_rows(f"SELECT message_id FROM {source}") == [("m-1",)]


# S3 only: encryption, retention, and what the operator sees when the server says no.


def _s3_lake(server: SeaweedServer, bucket: str | None = None, **options: Any) -> S3Lake:
    return S3Lake(
        server.endpoint, bucket or _fresh_bucket(), server.access_key, server.secret_key, **options
    )


def test_with_sse_every_object_is_stored_encrypted_by_the_server(s3_server):
    encrypted = _s3_lake(s3_server, sse=True)
    plain = _s3_lake(s3_server)
    client = _client(s3_server)

    (name,) = encrypted.write("b1", [_event("m-1")])
    plain.write("b1", [_event("m-1")])

    assert client.stat_object(encrypted.bucket, name).metadata["x-amz-server-side-encryption"] == (
        "AES256"
    )
    assert "x-amz-server-side-encryption" not in client.stat_object(plain.bucket, name).metadata
    assert encrypted.read_keys(name) == [("web", "m-1")]


def test_retention_days_set_the_buckets_expiration_rule_for_lake_objects(s3_server):
    lake = _s3_lake(s3_server, retention_days=30)

    lake.files()

    rules = _client(s3_server).get_bucket_lifecycle(lake.bucket).rules
    assert [(r.rule_id, r.status, r.rule_filter.prefix, r.expiration.days) for r in rules] == [
        (RETENTION_RULE_ID, ENABLED, "dt=", 30)
    ]


def test_changing_or_clearing_retention_keeps_the_buckets_other_rules(s3_server):
    client = _client(s3_server)
    bucket = _fresh_bucket()
    client.make_bucket(bucket)
    theirs = Rule(ENABLED, Filter(prefix="tmp/"), rule_id="theirs", expiration=Expiration(days=1))
    client.set_bucket_lifecycle(bucket, LifecycleConfig([theirs]))

    _s3_lake(s3_server, bucket, retention_days=30).files()
    _s3_lake(s3_server, bucket, retention_days=7).files()
    changed = client.get_bucket_lifecycle(bucket).rules
    _s3_lake(s3_server, bucket, retention_days=None).files()
    cleared = client.get_bucket_lifecycle(bucket).rules

    assert sorted((r.rule_id, r.expiration.days) for r in changed) == [
        (RETENTION_RULE_ID, 7),
        ("theirs", 1),
    ]
    assert [(r.rule_id, r.expiration.days) for r in cleared] == [("theirs", 1)]


def test_without_retention_a_lake_sets_no_lifecycle_rule(s3_server):
    lake = _s3_lake(s3_server)

    lake.files()

    assert _client(s3_server).get_bucket_lifecycle(lake.bucket) is None


def test_an_unreachable_server_is_an_adapter_error_naming_the_endpoint_setting():
    lake = S3Lake(f"http://127.0.0.1:{free_port()}", "c360-lake", "key", "secret-key")

    with pytest.raises(AdapterError, match=r"could not be reached.*C360_LAKE_S3_ENDPOINT"):
        lake.write("b1", [_event("m-1")])


def test_wrong_keys_are_an_adapter_error_naming_the_key_settings(s3_server):
    lake = S3Lake(s3_server.endpoint, _fresh_bucket(), s3_server.access_key, "not-the-secret")

    with pytest.raises(AdapterError, match="C360_LAKE_S3_SECRET_KEY") as caught:
        lake.files()

    assert "not-the-secret" not in str(caught.value)


def test_a_bucket_removed_under_a_running_lake_is_an_adapter_error_naming_the_bucket(s3_server):
    lake = _s3_lake(s3_server)
    lake.files()
    _client(s3_server).remove_bucket(lake.bucket)

    with pytest.raises(AdapterError, match=f"{lake.bucket}.*C360_LAKE_S3_BUCKET"):
        lake.read_keys("dt=2026-12-04/event_type=track/b1.parquet")


def test_a_server_that_refuses_encryption_fails_the_write_naming_the_sse_setting(stand_in):
    stand_in.mode = "refuse-sse"
    lake = S3Lake(stand_in.endpoint, "c360-lake", "key", "secret", region="us-east-1", sse=True)

    with pytest.raises(AdapterError, match=r"server-side encryption.*C360_LAKE_SSE"):
        lake.write("b1", [_event("m-1")])


def test_a_server_that_ignores_encryption_fails_the_write_naming_the_sse_setting(stand_in):
    stand_in.mode = "ignore-sse"
    lake = S3Lake(stand_in.endpoint, "c360-lake", "key", "secret", region="us-east-1", sse=True)

    with pytest.raises(AdapterError, match=r"without server-side encryption.*C360_LAKE_SSE"):
        lake.write("b1", [_event("m-1")])


def test_a_server_without_lifecycle_rules_refuses_retention_naming_the_setting(stand_in):
    stand_in.mode = "no-lifecycle"
    keep = S3Lake(stand_in.endpoint, "c360-lake", "key", "secret", region="us-east-1")
    expire = S3Lake(
        stand_in.endpoint, "c360-lake", "key", "secret", region="us-east-1", retention_days=30
    )

    assert keep.write("b1", [_event("m-1")]) == ["dt=2026-12-04/event_type=track/b1.parquet"]
    with pytest.raises(AdapterError, match=r"lifecycle.*C360_LAKE_RETENTION_DAYS"):
        expire.files()


def test_the_runtime_builds_the_s3_lake_only_when_an_endpoint_is_set(tmp_path):
    base = {"data_dir": tmp_path, "postgres_dsn": "postgresql://x", "valkey_url": "redis://x"}
    s3 = {
        "lake_s3_endpoint": "http://127.0.0.1:9000",
        "lake_s3_access_key": "key",
        "lake_s3_secret_key": "secret-key",
        "lake_s3_bucket": "my-lake",
        "lake_sse": "true",
        "lake_retention_days": "90",
    }

    local = Runtime(load_settings(base, environ={})).lake
    remote = Runtime(load_settings({**base, **s3}, environ={})).lake

    assert isinstance(local, LocalParquetLake)
    assert local.root == tmp_path / "lake"
    assert isinstance(remote, S3Lake)
    assert (remote.endpoint, remote.bucket, remote.sse, remote.retention_days) == (
        "http://127.0.0.1:9000",
        "my-lake",
        True,
        90,
    )


class StandIn:
    """A stand-in S3 server on 127.0.0.1 for what SeaweedFS does not do: refuse encryption or
    lifecycle rules. It keeps nothing; `mode` says how it answers."""

    def __init__(self) -> None:
        self.mode = ""
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"


def _handler(stand_in: StandIn) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_HEAD(self) -> None:  # the bucket exists
            self._answer(200, b"")

        def do_GET(self) -> None:
            if "lifecycle" in self.path and stand_in.mode == "no-lifecycle":
                self._error(501, "NotImplemented", "lifecycle rules are not supported")
            elif "lifecycle" in self.path:
                self._error(404, "NoSuchLifecycleConfiguration", "no lifecycle rules")
            else:
                self._answer(200, b'<?xml version="1.0"?><ListBucketResult></ListBucketResult>')

        def do_PUT(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            asked = self.headers.get("x-amz-server-side-encryption")
            if asked and stand_in.mode == "refuse-sse":
                self._error(501, "NotImplemented", "encryption requested but no KMS is set up")
            else:
                self._answer(200, b"", {"ETag": '"0"'})

        def _error(self, status: int, code: str, message: str) -> None:
            body = (
                f'<?xml version="1.0"?><Error><Code>{code}</Code><Message>{message}</Message>'
                f"<Resource>{self.path}</Resource><RequestId>1</RequestId></Error>"
            ).encode()
            self._answer(status, body, {"Content-Type": "application/xml"})

        def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

    return Handler


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    """The stand-in S3 server, for one test."""
    server = StandIn()
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()
        thread.join(5)
