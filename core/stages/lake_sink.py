"""The lake sink: writes raw events to the lake exactly once.

Two steps, in this order:
1. claim: in PostgreSQL, each event not yet claimed is recorded in `lake_index` under the file
   this batch will write; the primary key lets only one batch claim an event;
2. write: the batch writes the events it has claimed, each file whole (see `Lake.write`).

A batch has a stable name (from its bus entries), so a re-delivered batch claims nothing new
and rewrites the same files with the same events. A crash between the steps leaves events
claimed and unwritten until the batch is re-delivered, never written twice.
"""

# TODO(lake repair): a batch whose actor message exhausts its retries (it is then in c360-dlq)
# leaves its claimed events in no file. Until a repair command rewrites such events from
# `events.payload` (F2 keeps every event whole), the lake can miss them, never double them.

from __future__ import annotations

import logging
from collections.abc import Sequence

import psycopg

from c360.adapters.lake import Lake, file_of
from c360.events.model import decode_event, first_copies
from c360.runtime import Runtime

log = logging.getLogger(__name__)


def sink(runtime: Runtime, batch_name: str, payloads: Sequence[bytes]) -> int:
    """Claim and write a batch's events; returns how many this batch holds in the lake."""
    events = first_copies([decode_event(payload) for payload in payloads])
    files = [file_of(batch_name, event) for event in events]
    with runtime.pool.connection() as conn:
        with conn.transaction():
            conn.execute(
                "INSERT INTO lake_index (source, message_id, file)"
                " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[])"
                " ON CONFLICT (source, message_id) DO NOTHING",
                ([e.source for e in events], [e.message_id for e in events], files),
            )
        claimed = {
            (row[0], row[1])
            for row in conn.execute(
                "SELECT source, message_id FROM lake_index"
                " WHERE (source, message_id) IN (SELECT * FROM unnest(%s::text[], %s::text[]))"
                " AND file = ANY(%s)",
                ([e.source for e in events], [e.message_id for e in events], sorted(set(files))),
            )
        }
    mine = [event for event in events if event.key in claimed]
    if mine:
        runtime.lake.write(batch_name, mine)
        if runtime.lake_query.keeps_recent:  # a re-delivered batch inserts again; counted once
            runtime.lake_query.insert_recent(mine)
    log.debug(
        "Lake batch %r: wrote %d events; %d were held by other batches.",
        batch_name,
        len(mine),
        len(events) - len(mine),
    )
    return len(mine)


def rebuild_index(conn: psycopg.Connection, lake: Lake) -> int:
    """Index the events of lake files the index does not know, from the files themselves.

    The index can lose rows the lake still holds (a `c360 migrate --down` drops the table and
    leaves the files); unindexed, a replay of those events would claim and write them again.
    Run before any sink starts. Only files absent from the index are read, and of them only
    the `source` and `message_id` columns. Returns how many events were indexed.
    """
    in_lake = lake.files()
    if not in_lake:
        return 0
    known = {row[0] for row in conn.execute("SELECT DISTINCT file FROM lake_index")}
    missing = sorted(set(in_lake) - known)
    indexed = 0
    for name in missing:
        sources, message_ids = _columns(lake.read_keys(name))
        with conn.transaction():
            done = conn.execute(
                "INSERT INTO lake_index (source, message_id, file)"
                " SELECT s, m, %s FROM unnest(%s::text[], %s::text[]) AS k(s, m)"
                " ON CONFLICT (source, message_id) DO NOTHING",
                (name, sources, message_ids),
            )
        indexed += done.rowcount
    if indexed:
        log.warning(
            "The lake index lacked %d events held in %d lake files; indexed them from the files.",
            indexed,
            len(missing),
        )
    return indexed


def _columns(keys: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    return [source for source, _ in keys], [message_id for _, message_id in keys]
