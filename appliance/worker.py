"""A worker process: Dramatiq worker threads running the stage actors, plus the pumps that
feed them from the bus. Start more worker processes to scale out."""

from __future__ import annotations

import logging
import os
import signal
import threading

import dramatiq
from dramatiq.brokers.redis import MAINTENANCE_SCALE, RedisBroker

from c360.adapters.bus import ID_RESOLUTION, RAW_EVENTS, UPDATED_PROFILES
from c360.adapters.lake_parquet import table_of
from c360.appliance import dead_letters
from c360.channels.delivery import SEND_THREADS, DeliverySender
from c360.governance.f0 import F0Scheduler
from c360.notifications.churn import ChurnScorer
from c360.notifications.scheduler import NotificationScheduler
from c360.reports.schedules import ReportScheduler
from c360.runtime import Runtime
from c360.segments.refresher import SegmentRefresher
from c360.settings import Settings
from c360.stages import F2_GROUP, F3_GROUP, LAKE_GROUP
from c360.stages.agents_stage import AGENTS_GROUP
from c360.stages.notifications_stage import NOTIFICATIONS_GROUP
from c360.stages.pump import Pump
from c360.stages.segments_stage import SEGMENTS_GROUP

log = logging.getLogger(__name__)

#: A worker silent this long is presumed dead and its in-flight messages are re-queued.
HEARTBEAT_TIMEOUT_MS = 15_000

#: Share of broker commands that also run maintenance (re-queueing a dead worker's messages).
MAINTENANCE_CHANCE = MAINTENANCE_SCALE // 50


#: Actor messages a worker process takes from each queue ahead: one running, one ready to start
#: when it ends. Dramatiq's default (twice the threads) would move small batches out of the
#: queue, where the pumps cannot see them waiting, so they would keep sending more small ones
#: instead of letting the next batch grow (see c360.stages.pump.MAX_QUEUED).
QUEUE_PREFETCH = 2

#: Dramatiq queues of the stage actors (see c360.stages.actors).
QUEUE_F1, QUEUE_F2, QUEUE_F3, QUEUE_LAKE = "c360-f1", "c360-f2", "c360-f3", "c360-lake"
QUEUE_SEGMENTS = "c360-segments"
QUEUE_NOTIFICATIONS = "c360-notifications"
QUEUE_AGENTS = "c360-agents"

#: The lake gathers bigger batches than the stages on the freshness path, for up to this long:
#: each batch writes (and fsyncs) whole files, so small batches cost the workers most of their
#: time and give the lake many tiny files.
LAKE_BATCH_FACTOR = 8
LAKE_LINGER_S = 2.0

#: Exit status of a worker that had to leave without Dramatiq's clean stop.
EXIT_STUCK = 3

#: On shutdown, in-flight actor messages get this long; unfinished ones are re-delivered later.
STOP_TIMEOUT_MS = 10_000


def make_broker(settings: Settings) -> RedisBroker:
    """The Dramatiq broker on the same Valkey as the bus."""
    broker = RedisBroker(
        url=settings.valkey_url,
        heartbeat_timeout=HEARTBEAT_TIMEOUT_MS,
        maintenance_chance=MAINTENANCE_CHANCE,
    )
    broker.add_middleware(dead_letters.FailureReasons(broker.client))
    return broker


def run_worker(settings: Settings, index: int, stop: threading.Event | None = None) -> None:
    """Run actors and pumps until SIGTERM / SIGINT (or `stop`)."""
    broker = make_broker(settings)
    dramatiq.set_broker(broker)
    from c360.stages import actors  # declared against the broker set above

    # each outbox send holds a connection from before the send to the recorded outcome, so
    # the sender's threads get their own share beside the actors'
    runtime = Runtime(settings, pool_size=settings.worker_threads + 2 + SEND_THREADS)
    actors.bind(runtime)
    # pyarrow imports pandas for its first table, a second or more of CPU: pay it now rather
    # than in the first lake batch, while the other stages' events wait for the processor
    table_of([])
    worker = dramatiq.Worker(broker, worker_threads=settings.worker_threads, worker_timeout=200)
    worker.queue_prefetch = QUEUE_PREFETCH  # no constructor argument for it
    worker.start()

    stop = stop or threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    # unique among every instance reading the same bus: a shared consumer name would share
    # (and steal) another process's unacknowledged deliveries
    me = f"{settings.instance_name}-{index}"

    def depth(queue: str):
        return lambda: int(broker.client.llen(f"dramatiq:{queue}"))

    pumps = [
        Pump(
            runtime.bus,
            RAW_EVENTS,
            F2_GROUP,
            f"f2-{me}",
            lambda name, p: actors.persist_events.send(p),
            depth(QUEUE_F2),
            settings.batch_size,
            stop,
        ),
        Pump(
            runtime.bus,
            RAW_EVENTS,
            LAKE_GROUP,
            f"lake-{me}",
            lambda name, p: actors.sink_events.send(name, p),
            depth(QUEUE_LAKE),
            settings.batch_size * LAKE_BATCH_FACTOR,
            stop,
            linger_s=LAKE_LINGER_S,
            one_batch=True,
        ),
        Pump(
            runtime.bus,
            ID_RESOLUTION,
            F3_GROUP,
            f"f3-{me}",
            lambda name, p: actors.resolve_events.send(p),
            depth(QUEUE_F3),
            settings.batch_size,
            stop,
        ),
        Pump(
            runtime.bus,
            UPDATED_PROFILES,
            SEGMENTS_GROUP,
            f"segments-{me}",
            lambda name, p: actors.refresh_segments.send(p),
            depth(QUEUE_SEGMENTS),
            settings.batch_size,
            stop,
        ),
        Pump(
            runtime.bus,
            UPDATED_PROFILES,
            NOTIFICATIONS_GROUP,
            f"notifications-{me}",
            lambda name, p: actors.plan_notifications.send(p),
            depth(QUEUE_NOTIFICATIONS),
            settings.batch_size,
            stop,
        ),
        Pump(
            runtime.bus,
            UPDATED_PROFILES,
            AGENTS_GROUP,
            f"agents-{me}",
            lambda name, p: actors.refresh_agents.send(p),
            depth(QUEUE_AGENTS),
            settings.batch_size,
            stop,
        ),
    ]
    threads = [threading.Thread(target=p.run, name=f"pump-{p.group}", daemon=True) for p in pumps]
    threads.append(
        threading.Thread(
            target=dead_letters.run,
            args=(
                broker.client,
                runtime.bus,
                [
                    QUEUE_F2,
                    QUEUE_F3,
                    QUEUE_LAKE,
                    QUEUE_F1,
                    QUEUE_SEGMENTS,
                    QUEUE_NOTIFICATIONS,
                    QUEUE_AGENTS,
                ],
                stop,
            ),
            name="dead-letters",
            daemon=True,
        )
    )
    for thread in threads:
        thread.start()
    # scheduled work (reports by email, F0 syncs, moving-window segments): each claims its
    # work in PostgreSQL or is idempotent, so every worker process may run them
    schedulers = [ReportScheduler(runtime), F0Scheduler(runtime), SegmentRefresher(runtime)]
    # due notifications: each claims its sends with FOR UPDATE SKIP LOCKED
    schedulers.append(NotificationScheduler(runtime))
    # customers' churn risk for churn rules: one worker at a time (an advisory lock)
    schedulers.append(ChurnScorer(runtime))
    # the outbox of every channel, and inbound messages nobody answered: claimed with a lease
    schedulers.append(DeliverySender(runtime))
    for scheduler in schedulers:
        scheduler.start()
    log.info("Worker %d running with %d threads.", index, settings.worker_threads)
    stop.wait()
    for scheduler in schedulers:
        scheduler.stop(timeout=0)  # a report being sent or a sync may finish while we wait
    for thread in [*threads, *schedulers]:
        thread.join(5)
    _stop_within(worker, STOP_TIMEOUT_MS / 1000 + 5)
    runtime.close()
    log.info("Worker %d stopped.", index)


def _stop_within(worker: dramatiq.Worker, limit_s: float) -> None:
    """Stop the Dramatiq worker, but never wait past `limit_s`: with Valkey gone, Dramatiq
    retries its acknowledgements forever, and a worker that cannot exit would outlive the
    appliance. Messages it could not acknowledge are re-delivered; every stage is idempotent."""
    stopper = threading.Thread(target=worker.stop, kwargs={"timeout": STOP_TIMEOUT_MS}, daemon=True)
    stopper.start()
    stopper.join(limit_s)
    if stopper.is_alive():
        log.error("The worker did not stop within %.0f s; exiting without it.", limit_s)
        logging.shutdown()
        os._exit(EXIT_STUCK)
