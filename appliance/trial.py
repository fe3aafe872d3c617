"""`c360 trial`: start the embedded stack, replay the CDNOW purchase log through the gateway with
the unchanged Segment Python client, wait until every profile is up to date, and summarise.

Running it again on the same data folder replays the same events; de-duplication on messageId
means no number changes.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import redis
import segment.analytics as segment_analytics

from c360 import counters, profile_service
from c360.appliance import datadir
from c360.appliance.engines import kept_secret
from c360.appliance.stack import Stack
from c360.connectors import cdnow
from c360.errors import C360Error
from c360.runtime import Runtime
from c360.settings import Settings

log = logging.getLogger(__name__)

TRIAL_SOURCE = "cdnow-trial"

#: The source of the events a user sends while trying c360, kept apart from CDNOW's.
MY_SOURCE = "my-events"

#: How long to wait for the pipeline to catch up after the replay before giving up.
CATCH_UP_TIMEOUT_S = 600


@dataclass
class TrialOptions:
    """What the trial was asked to do."""

    limit: int | None = None
    serve: bool = True
    dataset: Path | None = None


def trial_settings(settings: Settings) -> Settings:
    """Settings with write keys (the replay's, and one for the user's own experiments) and an
    API token for the trial, kept in the data folder."""
    secret_dir = settings.data_dir / "secrets"
    write_key = kept_secret(secret_dir / "trial-write-key")
    my_key = kept_secret(secret_dir / "my-write-key")
    token = kept_secret(secret_dir / "trial-api-token")
    return replace(
        settings,
        write_keys={**settings.write_keys, write_key: TRIAL_SOURCE, my_key: MY_SOURCE},
        api_tokens=(*settings.api_tokens, token),
        **_one_process_each(),
    )


def _one_process_each() -> dict[str, int]:
    """The trial runs one gateway and one worker process unless told otherwise: the replaying
    client shares the same cores, and more processes only compete with it (measured on 2
    cores: 20 s end to end and 1.0 GB in all, against 27 s and 1.5 GB with two of each)."""
    chosen = {}
    for name in ("gateway_processes", "worker_processes"):
        if f"C360_{name.upper()}" not in os.environ:
            chosen[name] = 1
    return chosen


def my_write_key(settings: Settings) -> str | None:
    """The write key for the user's own events (source `my-events`), if the trial set one."""
    return next((key for key, source in settings.write_keys.items() if source == MY_SOURCE), None)


def run_trial(
    settings: Settings, options: TrialOptions, progress: Any = None
) -> tuple[dict[str, Any], Stack]:
    """Run the whole trial; returns the summary and the stack, still running when serving."""
    if options.dataset is not None and not options.dataset.is_file():
        raise C360Error(
            f"the dataset {options.dataset} does not exist or is not a file; give the path of a "
            "CDNOW_master.txt with --dataset, or leave --dataset out to download it"
        )
    datadir.create(settings.data_dir)  # a clear message if it cannot be written, before secrets
    settings = trial_settings(settings)
    dataset = options.dataset or cdnow.fetch(settings.data_dir / "downloads")
    purchases = list(cdnow.read(dataset, options.limit))

    stack = Stack(settings)
    try:
        settings = stack.start()
        runtime = Runtime(settings)
        valkey = redis.Redis.from_url(settings.valkey_url)
        before = counters.read(valkey, TRIAL_SOURCE)
        started = time.monotonic()
        replay_s, failures = _replay(stack, settings, purchases, progress)
        if failures:
            raise C360Error(
                f"{failures} events could not be delivered to the gateway, so the profiles "
                f"can never be complete; see the logs in {settings.data_dir / 'logs'}"
            )
        after = counters.read(valkey, TRIAL_SOURCE)
        caught_up_s = _wait_until_current(runtime, stack, purchases, started)
        summary = _summary(runtime, purchases, before, after, replay_s, caught_up_s, started)
        summary["client_failures"] = failures
        if options.serve:
            _gather_statistics(runtime)
            summary["chat_demo"] = _load_demo_catalogue(runtime, stack.url)
        summary["api"] = stack.url if options.serve else None
        summary["api_token"] = settings.api_tokens[-1] if options.serve else None
        runtime.close()
        valkey.close()
        return summary, stack
    except BaseException:
        stack.stop()
        raise
    finally:
        if not options.serve:
            stack.stop()


def _load_demo_catalogue(runtime: Runtime, url: str) -> str:
    """Load the bilingual demo catalogue into the marketing knowledge the first time only (a
    few seconds of embedding), so the agent has products, prices, promotions and stores to
    talk about; a later trial on the same folder keeps what the user changed or deleted.
    Returns the address of the web-chat demo page."""
    from c360.knowledge import loaders, store  # the embedding model loads only when serving

    with runtime.pool.connection() as conn:
        empty = conn.execute("SELECT NOT EXISTS (SELECT 1 FROM knowledge.items)").fetchone()[0]
    if empty:
        store.upsert(runtime, loaders.demo_catalogue())
    return f"{url}/chat/demo?userId=cdnow-00001"


def _gather_statistics(runtime: Runtime) -> None:
    """ANALYZE what the replay just loaded, before anyone opens a dashboard: autovacuum may
    take minutes to get there, and without statistics PostgreSQL plans the analytics queries
    for a few hundred rows instead of tens of thousands."""
    with runtime.pool.connection() as conn:
        conn.execute("ANALYZE events, profiles, identifiers")


def _replay(
    stack: Stack, settings: Settings, purchases: list[cdnow.Purchase], progress: Any
) -> tuple[float, int]:
    """Send every purchase with the Segment client; returns seconds taken and failures."""
    write_key = next(k for k, v in settings.write_keys.items() if v == TRIAL_SOURCE)
    failures: list[Any] = []
    lock = threading.Lock()

    def on_error(error: Exception, batch: list[Any]) -> None:
        with lock:
            failures.extend(batch)
        log.warning("The Segment client could not deliver %d events: %s", len(batch), error)

    client = segment_analytics.Client(
        write_key,
        host=stack.url,
        gzip=True,
        max_queue_size=len(purchases) + 1000,
        upload_size=100,
        on_error=on_error,
        thread=2,
        max_retries=10,
    )
    started = time.monotonic()
    for index, purchase in enumerate(purchases):
        queued, _message = client.track(
            user_id=purchase.user_id,
            event="Order Completed",
            properties={
                "revenue": float(purchase.dollars),
                "quantity": purchase.quantity,
                "currency": "USD",
                "line": purchase.line_no,
            },
            timestamp=purchase.timestamp,
            message_id=purchase.message_id,
        )
        if not queued:
            raise C360Error("the Segment client's queue is full; this is a bug in the trial")
        if progress and index % 1000 == 0:
            progress(index, len(purchases))
    # not client.flush(): with the gateway dead, the client would retry for many minutes
    while client.queue.unfinished_tasks:
        stack.check_alive()
        time.sleep(0.05)
    client.join()
    if progress:
        progress(len(purchases), len(purchases))
    return time.monotonic() - started, len(failures)


def _wait_until_current(
    runtime: Runtime, stack: Stack, purchases: list[cdnow.Purchase], started: float
) -> float:
    """Block until every replayed event is stored, resolved and in the lake; fail at once if a
    gateway or worker process dies meanwhile, since then the pipeline can never catch up."""
    ids = [p.message_id for p in purchases]
    deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
    while time.monotonic() < deadline:
        stack.check_alive()
        with runtime.pool.connection() as conn:
            resolved, in_lake = conn.execute(
                "SELECT (SELECT count(*) FROM events WHERE source = %s"
                "        AND message_id = ANY(%s) AND profile_id IS NOT NULL),"
                "       (SELECT count(*) FROM lake_index"
                "        WHERE source = %s AND message_id = ANY(%s))",
                (TRIAL_SOURCE, ids, TRIAL_SOURCE, ids),
            ).fetchone()
        if resolved == len(ids) and in_lake == len(ids) and _lake_files_complete(runtime):
            return time.monotonic() - started
        time.sleep(0.25)
    raise C360Error(
        f"the pipeline did not catch up within {CATCH_UP_TIMEOUT_S} s; "
        f"see the logs in {runtime.settings.data_dir / 'logs'}"
    )


def _lake_files_complete(runtime: Runtime) -> bool:
    """True when every event the lake sink claimed for the trial's source is in a file: the
    sink claims an event in the index first and writes its file after."""
    with runtime.pool.connection() as conn:
        (claimed,) = conn.execute(
            "SELECT count(*) FROM lake_index WHERE source = %s", (TRIAL_SOURCE,)
        ).fetchone()
    rows = runtime.lake_query.query(f"SELECT count() FROM {{lake}} WHERE source = '{TRIAL_SOURCE}'")
    return bool(rows) and int(rows[0][0]) == claimed


def _summary(
    runtime: Runtime,
    purchases: list[cdnow.Purchase],
    before: tuple[int, int],
    after: tuple[int, int],
    replay_s: float,
    caught_up_s: float,
    started: float,
) -> dict[str, Any]:
    # the CDNOW figures only: events sent with other keys (the user's own) are not counted
    totals = profile_service.totals(runtime, TRIAL_SOURCE)
    accepted = after[0] - before[0]
    rejected = after[1] - before[1]
    freshness = _freshness(runtime, started_wall=time.time() - (time.monotonic() - started))
    lake_events = runtime.lake_query.query(
        f"SELECT count() FROM {{lake}} WHERE source = '{TRIAL_SOURCE}'"
    )
    top = profile_service.list_profiles(
        runtime, profile_service.ProfileFilter(limit=5, source=TRIAL_SOURCE)
    )
    return {
        "events_sent": len(purchases),
        "events_accepted": accepted,
        "events_rejected": rejected,
        "events_stored": totals["events"],
        "events_in_lake": int(lake_events[0][0]) if lake_events else 0,
        "profiles": totals["profiles"],
        "orders_total": int(totals["orders"]),
        "revenue_total": Decimal(totals["revenue"]).quantize(Decimal("0.01")),
        "top_customers": [
            {
                "user_id": _user_id(doc),
                "orders": doc["order_count"],
                "revenue": Decimal(str(doc["revenue"])).quantize(Decimal("0.01")),
            }
            for doc in top
        ],
        "replay_seconds": round(replay_s, 2),
        "end_to_end_seconds": round(caught_up_s, 2),
        "events_per_second": round(accepted / replay_s, 1) if replay_s else None,
        **freshness,
    }


#: Seconds from receipt at the gateway to resolution into a profile.
_DELAY = "extract(epoch FROM resolved_at - received_at)"


def _freshness(runtime: Runtime, started_wall: float) -> dict[str, Any]:
    """Event-to-profile delay (receipt at the gateway to resolution in F3), this run's events."""
    query = (
        "SELECT count(*),"
        " percentile_cont(0.5) WITHIN GROUP (ORDER BY {delay}),"
        " percentile_cont(0.95) WITHIN GROUP (ORDER BY {delay})"
        " FROM events WHERE source = %s AND resolved_at IS NOT NULL {where}"
    )
    with runtime.pool.connection() as conn:
        count, p50, p95 = conn.execute(
            query.format(delay=_DELAY, where="AND received_at >= to_timestamp(%s)"),
            (TRIAL_SOURCE, started_wall),
        ).fetchone()
        scope = "this run"
        if not count:  # a replay of stored events resolves nothing new: report the stored ones
            count, p50, p95 = conn.execute(
                query.format(delay=_DELAY, where=""), (TRIAL_SOURCE,)
            ).fetchone()
            scope = "events stored earlier (this run added none)"
    return {
        "freshness_p50_ms": round(p50 * 1000, 1) if p50 is not None else None,
        "freshness_p95_ms": round(p95 * 1000, 1) if p95 is not None else None,
        "freshness_scope": scope,
    }


def _user_id(doc: dict[str, Any]) -> str | None:
    for ident in doc["identifiers"]:
        if ident["type"] == "user_id":
            return ident["value"]
    return None
