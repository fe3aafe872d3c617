"""The lake sink: writes raw events to the lake exactly once.

Each batch has a stable name (the actor message's id), so a re-delivered batch rewrites the
same files rather than adding new ones. An event already held by another batch's file is left
out; advisory locks on the batch's events keep two batches from claiming the same event.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from c360.events.model import Event, decode_event
from c360.runtime import Runtime

log = logging.getLogger(__name__)


def sink(runtime: Runtime, batch_name: str, payloads: Sequence[bytes]) -> int:
    """Write a batch's new events to the lake; returns how many it holds now."""
    events = _first_copies([decode_event(payload) for payload in payloads])
    keys = ([e.source for e in events], [e.message_id for e in events])
    with runtime.pool.connection() as conn, conn.transaction():
        conn.execute(
            "SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT"
            " hashtextextended(s || chr(31) || m, 720) AS h"
            " FROM unnest(%s::text[], %s::text[]) AS x(s, m) ORDER BY h) y",
            keys,
        )
        elsewhere = {
            (row[0], row[1])
            for row in conn.execute(
                "SELECT source, message_id FROM lake_index"
                " WHERE (source, message_id) IN (SELECT * FROM unnest(%s::text[], %s::text[]))"
                " AND split_part(file, '/', 3) <> %s",
                (*keys, f"{batch_name}.parquet"),
            )
        }
        fresh = [event for event in events if event.key not in elsewhere]
        runtime.lake.remove(runtime.lake.files_of(batch_name))
        files = runtime.lake.write(batch_name, fresh) if fresh else []
        _index(conn, fresh, files)
    log.debug("Lake batch %r: %d events, %d already in the lake.", batch_name, len(fresh), len(elsewhere))
    return len(fresh)


def _index(conn, events: list[Event], files: list[str]) -> None:
    by_partition = {file.rsplit("/", 1)[0]: file for file in files}
    from c360.adapters.lake_parquet import partition_of

    conn.execute(
        "INSERT INTO lake_index (source, message_id, file)"
        " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[])"
        " ON CONFLICT (source, message_id) DO UPDATE SET file = EXCLUDED.file",
        (
            [e.source for e in events],
            [e.message_id for e in events],
            [by_partition[partition_of(e)] for e in events],
        ),
    )


def _first_copies(events: list[Event]) -> list[Event]:
    seen: set[tuple[str, str]] = set()
    kept = []
    for event in events:
        if event.key not in seen:
            seen.add(event.key)
            kept.append(event)
    return kept
