"""Reliability under faults: a steady stream of events through the appliance on the real local
servers (Kafka for the bus, Valkey over TCP, PostgreSQL on TCP), with `c360 gateway` and
`c360 worker` as separate processes configured by environment, while a worker, the gateway and
the Kafka broker are killed with SIGKILL in turn and restarted (same ports, same folders).

The client is Segment-like: events queue on the client, a batch is sent and, on a 503, a
connection error or a timeout, sent again with the same messageIds after a back-off. Afterwards
every acknowledged event (answered 200) must be in the lake exactly once and counted exactly
once in its customer's profile, and each kill's catch-up time is measured: from the restart
until every event acknowledged before it is in a profile and in the lake.

Shared by `bench/faults.py` (prints the figures) and `tests/e2e/test_faults_on_servers.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg
import pyarrow.parquet as pq
from freshness import _event as freshness_event
from freshness import _iso

from c360 import migrate
from c360.appliance import datadir
from c360.appliance.engines import die_with_parent, free_port, port_is_free
from c360.appliance.servers import LocalServers
from c360.errors import EngineError

HOST = "127.0.0.1"
SOURCE = "faults"
PROBE_SOURCE = "faults-probe"

#: Events are made every tick and queued on the client of their customer.
TICK_S = 0.1

#: A client sends what its queue holds this often, at most this many events a request: the
#: Segment clients' upload interval and upload size.
FLUSH_S = 0.25
MAX_BATCH = 100

#: Back-off of a failed request: doubling from the first to the last, so a client that meets a
#: dead broker knocks a few times a second at first, then every 2 s.
BACKOFF_S = (0.2, 2.0)

#: A client gives a batch up (and the run fails) when it is not acknowledged within this long.
BATCH_DEADLINE_S = 90.0

#: How long a client waits for one answer before it counts as lost and is sent again.
REQUEST_TIMEOUT_S = 10.0

#: While the broker is down the gateway must answer 503, never hang: a probe that gets no
#: answer in this long (the bus gives up after 5 s) counts as a hang. The seconds each 503
#: took are reported as figures, not judged.
PROBE_TIMEOUT_S = 15.0

#: Requests sent while the broker is down: at least the first, the first after the gateway
#: found the broker gone, and one after it should have tried again; at most one a pause.
PROBES_MIN, PROBES_MAX = 4, 40
PROBE_EVERY_S = 0.5

#: A 200 is impossible from a request sent this long after the broker was killed (and
#: answered before it was started again): earlier ones may have been acknowledged in time.
BROKER_DEAD_AFTER_S = 0.5

#: Longest wait, after the load stops, for every acknowledged event to be resolved and in
#: the lake.
DRAIN_TIMEOUT_S = 120.0

#: The baseline (event -> profile delay with nothing broken) is taken from events acknowledged
#: at least this long before the first kill, so none of them was caught by it.
STEADY_MARGIN_S = 2.0

#: Longest wait for a restarted gateway to answer /health.
GATEWAY_READY_S = 60.0

_ENCODER = msgspec.json.Encoder(decimal_format="number")
_DECODER = msgspec.json.Decoder(float_hook=Decimal)


@dataclass(frozen=True)
class Plan:
    """What to run: the load, and when each fault happens."""

    rate: int = 250
    customers: int = 24
    clients: int = 6
    workers: int = 2
    #: Seconds of load before the first kill.
    warm_up_s: float = 6.0
    #: Seconds a killed process stays down before it is started again.
    down_s: float = 2.0
    #: Seconds of load after each restart before the next kill (and before the load stops).
    settle_s: dict[str, float] = field(
        default_factory=lambda: {"worker": 14.0, "gateway": 8.0, "broker": 14.0}
    )
    seed: int = 360


FAULTS = ("worker", "gateway", "broker")


@dataclass
class Fault:
    """One kill and restart, with wall-clock times (time.time())."""

    name: str
    killed_at: float = 0.0
    restarted_at: float = 0.0
    ready_at: float | None = None
    probes: list[dict[str, Any]] = field(default_factory=list)


class ServersUnavailable(EngineError):
    """A server could not start at all (Kafka needs Java and its jars): nothing was run."""


def run(folder: Path, plan: Plan | None = None, say: Any = None) -> dict[str, Any]:
    """Start everything in `folder`, run the plan, stop everything; the report."""
    plan = plan or Plan()
    say = say or (lambda text: None)
    pipeline = Pipeline(folder, plan.workers)
    try:
        say("starting the servers (Kafka takes about 10 s)")
        try:
            pipeline.start()
        except EngineError as exc:
            raise ServersUnavailable(str(exc)) from exc
        say(f"pipeline up on {pipeline.url}; load at {plan.rate} events/s")
        return _run_plan(pipeline, plan, say)
    finally:
        pipeline.stop()


def _run_plan(pipeline: Pipeline, plan: Plan, say: Any) -> dict[str, Any]:
    sender = Sender(pipeline.url, pipeline.write_key, plan)
    started = time.time()
    sender.start()
    faults = []
    try:
        time.sleep(plan.warm_up_s)
        for name in FAULTS:
            say(f"killing the {name}")
            faults.append(pipeline.inject(name, plan.down_s))
            time.sleep(plan.settle_s[name])
    finally:
        sender.finish()
    say(f"load stopped: {len(sender.acked_ids)} events acknowledged; draining")
    drain_s = pipeline.wait_until_drained(sender.acked_ids)
    return report(pipeline, plan, sender, faults, started, drain_s)


class Pipeline:
    """The servers, and the gateway and worker processes, each of which can be killed."""

    def __init__(self, folder: Path, workers: int) -> None:
        self.servers = LocalServers(folder / "servers")
        self.data_dir = folder / "data"
        self.port = free_port()
        self.write_key = f"faults-{uuid.uuid4().hex}"
        self.probe_key = f"probe-{uuid.uuid4().hex}"
        self.token = uuid.uuid4().hex
        self.workers = workers
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """The gateway's base URL."""
        return f"http://{HOST}:{self.port}"

    @property
    def lake_dir(self) -> Path:
        """Where the lake sink writes its Parquet files."""
        return self.data_dir / "lake"

    def start(self) -> None:
        """Servers, schema, workers, gateway; returns once the gateway answers."""
        datadir.create(self.servers.folder)
        self.servers.postgres.start()
        self.servers.valkey.start()
        self.servers.kafka.start()
        datadir.create(self.data_dir)
        datadir.prepare(self.data_dir)
        with psycopg.connect(self.servers.postgres.dsn, autocommit=True) as conn:
            migrate.upgrade(conn)  # a new data folder: no lake files to index yet
        for index in range(self.workers):
            self.launch(f"worker-{index}")
        self.launch("gateway")
        self.wait_for_gateway()

    def stop(self) -> None:
        """SIGTERM every process (SIGKILL past 20 s), then the servers."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self.servers.kafka.stop()
        self.servers.valkey.stop()
        self.servers.postgres.stop()

    def environment(self) -> dict[str, str]:
        """The C360_* settings of the gateway and workers; nothing else configures them."""
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("C360_")}
        return {
            **inherited,
            "C360_DATA_DIR": str(self.data_dir),
            "C360_HOST": HOST,
            "C360_PORT": str(self.port),
            "C360_POSTGRES_DSN": self.servers.postgres.dsn,
            "C360_VALKEY_URL": self.servers.valkey.url,
            "C360_KAFKA_BOOTSTRAP": self.servers.kafka.bootstrap,
            "C360_WRITE_KEYS": f"{self.write_key}:{SOURCE},{self.probe_key}:{PROBE_SOURCE}",
            "C360_API_TOKENS": self.token,
            # one gateway process, so SIGKILL hits the process that holds the requests
            "C360_GATEWAY_PROCESSES": "1",
            "C360_LOG_LEVEL": "INFO",
        }

    def launch(self, name: str) -> None:
        """Start `c360 gateway` or `c360 worker --index N`, its output in logs/<name>.log."""
        role, _, index = name.partition("-")
        args = [role, "--index", index] if index else [role]
        logs = self.data_dir / "logs"
        logs.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(logs / f"{name}.log", "ab") as output:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "c360.appliance.cli", *args],
                env=self.environment(),
                stdout=output,
                stderr=subprocess.STDOUT,
                preexec_fn=lambda: die_with_parent(signal.SIGTERM),
            )

    def inject(self, name: str, down_s: float) -> Fault:
        """SIGKILL one part, wait `down_s`, start it again on the same port and folder."""
        fault = Fault(name)
        if name == "broker":
            return self._break_broker(fault, down_s)
        victim = "worker-0" if name == "worker" else "gateway"
        fault.killed_at = time.time()
        self.processes[victim].kill()
        self.processes[victim].wait(10)
        time.sleep(down_s)
        if victim == "gateway":
            self._wait_for_port(self.port)
        fault.restarted_at = time.time()
        self.launch(victim)
        if victim == "gateway":
            self.wait_for_gateway()
            fault.ready_at = time.time()
        return fault

    def _break_broker(self, fault: Fault, down_s: float) -> Fault:
        kafka = self.servers.kafka
        if kafka.process is None:
            raise RuntimeError("the broker is not running, so it cannot be killed")
        fault.killed_at = time.time()
        kafka.process.kill()
        kafka.process.wait(10)
        deadline = fault.killed_at + down_s
        time.sleep(BROKER_DEAD_AFTER_S)
        for _ in range(PROBES_MAX):  # bounded by count and by the deadline
            fault.probes.append(self.probe())
            if len(fault.probes) >= PROBES_MIN and time.time() >= deadline:
                break
            time.sleep(PROBE_EVERY_S)
        fault.restarted_at = time.time()
        kafka.start()
        fault.ready_at = time.time()
        return fault

    def probe(self) -> dict[str, Any]:
        """One event sent while the broker is down: its status, Retry-After and delay."""
        event = {"userId": "probe", "event": "Probe", "messageId": f"probe-{uuid.uuid4().hex}"}
        began = time.monotonic()
        try:
            answer = httpx.post(
                f"{self.url}/v1/track",
                json=event,
                auth=(self.probe_key, ""),
                timeout=PROBE_TIMEOUT_S,
            )
            status, retry_after = answer.status_code, answer.headers.get("retry-after")
        except httpx.HTTPError as exc:
            status, retry_after = type(exc).__name__, None
        return {
            "status": status,
            "retry_after": retry_after,
            "seconds": round(time.monotonic() - began, 2),
        }

    def wait_for_gateway(self) -> None:
        """Until /health answers 200; fails if the gateway exits or takes too long."""
        deadline = time.monotonic() + GATEWAY_READY_S
        while time.monotonic() < deadline:
            if self.processes["gateway"].poll() is not None:
                raise RuntimeError(f"the gateway exited; see {self.data_dir / 'logs'}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"the gateway did not answer within {GATEWAY_READY_S:.0f} s")

    def _wait_for_port(self, port: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not port_is_free(HOST, port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def exited(self) -> dict[str, int]:
        """Processes that exited without being killed by the plan: name -> exit code."""
        return {
            name: code
            for name, process in self.processes.items()
            if (code := process.poll()) is not None
        }

    def wait_until_drained(self, ids: list[str]) -> float | None:
        """Seconds until every acknowledged event is resolved and claimed by a lake file
        that exists; None if that does not happen within DRAIN_TIMEOUT_S."""
        started = time.monotonic()
        with psycopg.connect(self.servers.postgres.dsn, autocommit=True) as conn:
            while time.monotonic() - started < DRAIN_TIMEOUT_S:
                if self._drained(conn, ids):
                    return round(time.monotonic() - started, 2)
                time.sleep(0.25)
        return None

    def _drained(self, conn: psycopg.Connection, ids: list[str]) -> bool:
        resolved, claimed = conn.execute(
            "SELECT (SELECT count(*) FROM events WHERE source = %(s)s"
            "        AND message_id = ANY(%(ids)s) AND resolved_at IS NOT NULL),"
            "       (SELECT count(*) FROM lake_index WHERE source = %(s)s"
            "        AND message_id = ANY(%(ids)s))",
            {"s": SOURCE, "ids": ids},
        ).fetchone()
        if resolved < len(ids) or claimed < len(ids):
            return False
        files = conn.execute(
            "SELECT DISTINCT file FROM lake_index WHERE source = %s", (SOURCE,)
        ).fetchall()
        return all((self.lake_dir / name).exists() for (name,) in files)


class Sender:
    """Customers' events at a steady rate through Segment-like clients, in a thread of its
    own; what was acknowledged, when, and every answer."""

    def __init__(self, url: str, write_key: str, plan: Plan) -> None:
        self.url = url
        self.write_key = write_key
        self.plan = plan
        self.stop = threading.Event()
        self.acked_ids: list[str] = []
        self.acks: list[tuple[float, list[str]]] = []
        self.answers: list[dict[str, Any]] = []
        self.expected: dict[str, list[Any]] = {}
        self.abandoned: list[str] = []
        self.refused: list[str] = []
        self.made = 0
        self._thread = threading.Thread(target=self._main, name="sender", daemon=True)

    def start(self) -> None:
        """Begin sending."""
        self._thread.start()

    def finish(self, timeout: float = BATCH_DEADLINE_S + 30) -> None:
        """Stop making events; wait until every queued batch is acknowledged or given up."""
        self.stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.abandoned.append("the sender was still running at its deadline")

    def _main(self) -> None:
        asyncio.run(self._send_all())

    async def _send_all(self) -> None:
        queues: list[list[dict[str, Any]]] = [[] for _ in range(self.plan.clients)]
        making = asyncio.create_task(self._make(queues))
        clients = [asyncio.create_task(self._client(queue, making)) for queue in queues]
        await asyncio.gather(making, *clients)

    async def _make(self, queues: list[list[dict[str, Any]]]) -> None:
        """Every tick, rate x tick new events, each queued on its customer's client."""
        rng = random.Random(self.plan.seed)
        per_tick = max(1, round(self.plan.rate * TICK_S))
        prefix = uuid.uuid4().hex[:8]
        start = time.perf_counter()
        for tick in range(int(3600 / TICK_S)):  # bounded: an hour at most
            if self.stop.is_set():
                return
            await asyncio.sleep(max(0.0, start + tick * TICK_S - time.perf_counter()))
            for _ in range(per_tick):
                user = rng.randrange(self.plan.customers)
                event = _event(rng, user, f"{prefix}-{self.made}")
                queues[user % len(queues)].append(event)
                self.made += 1

    async def _client(self, queue: list[dict[str, Any]], making: asyncio.Task[None]) -> None:
        """One client: send its queue in batches until the maker is done and it is empty."""
        async with httpx.AsyncClient(base_url=self.url, auth=(self.write_key, "")) as http:
            while not (making.done() and not queue):
                if not queue:
                    await asyncio.sleep(FLUSH_S)
                    continue
                batch = queue[:MAX_BATCH]
                del queue[:MAX_BATCH]
                await self._deliver(http, batch)
                if len(queue) < MAX_BATCH:
                    await asyncio.sleep(FLUSH_S)

    async def _deliver(self, http: httpx.AsyncClient, batch: list[dict[str, Any]]) -> None:
        """Send a batch until it is acknowledged, refused (4xx) or past its deadline."""
        deadline = time.monotonic() + BATCH_DEADLINE_S
        first, cap = BACKOFF_S
        for attempt in range(10_000):  # bounded by the deadline well before this
            sent = time.time()
            status, retry_after = await self._post(http, batch)
            self.answers.append(
                {"sent": sent, "answered": time.time(), "status": status, "retry": retry_after}
            )
            if status == 200:
                self._acknowledged(batch)
                return
            if isinstance(status, int) and 400 <= status < 500:
                self.refused.extend(event["messageId"] for event in batch)
                return
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(min(cap, first * 2**attempt))
        self.abandoned.extend(event["messageId"] for event in batch)

    async def _post(
        self, http: httpx.AsyncClient, batch: list[dict[str, Any]]
    ) -> tuple[int | str, str | None]:
        """Status (or the error's name) and Retry-After; sentAt is set per attempt."""
        body = _ENCODER.encode({"batch": batch, "sentAt": _iso(time.time())})
        try:
            answer = await http.post(
                "/v1/batch",
                content=body,
                headers={"Content-Type": "application/json"},
                timeout=REQUEST_TIMEOUT_S,
            )
        except httpx.HTTPError as exc:
            return type(exc).__name__, None
        return answer.status_code, answer.headers.get("retry-after")

    def _acknowledged(self, batch: list[dict[str, Any]]) -> None:
        ids = [event["messageId"] for event in batch]
        self.acks.append((time.time(), ids))
        self.acked_ids.extend(ids)
        for event in batch:
            tally = self.expected.setdefault(event["userId"], [0, 0, Decimal(0)])
            tally[0] += 1
            if event.get("event") == "Order Completed":
                tally[1] += 1
                tally[2] += event["properties"]["revenue"]


def _event(rng: random.Random, user: int, message_id: str) -> dict[str, Any]:
    """bench/freshness.py's event for a customer; an order's revenue in dollars and cents, an
    exact Decimal written as a JSON number."""
    event = freshness_event(rng, user, message_id, _iso(time.time() - rng.uniform(0.05, 1.0)))
    if event.get("event") == "Order Completed":
        event["properties"]["revenue"] = Decimal(rng.randrange(100, 500_000)).scaleb(-2)
        event["properties"]["currency"] = "USD"
    return event


# --- what happened ----------------------------------------------------------------------------


def report(
    pipeline: Pipeline,
    plan: Plan,
    sender: Sender,
    faults: list[Fault],
    started: float,
    drain_s: float | None,
) -> dict[str, Any]:
    """The measurements and every problem found, as one JSON-ready object."""
    with psycopg.connect(pipeline.servers.postgres.dsn, autocommit=True) as conn:
        stored = _stored(conn)
        profiles_in_store = _profiles_in_store(conn)
        calm_until = (faults[0].killed_at if faults else time.time()) - STEADY_MARGIN_S
        steady = _freshness(conn, [i for at, ids in sender.acks if at < calm_until for i in ids])
    lake = _read_lake(pipeline.lake_dir)
    profiles_in_api = _profiles_in_api(pipeline, sorted(sender.expected))
    statuses = Counter(str(answer["status"]) for answer in sender.answers)
    figures = [_catch_up(fault, sender, stored, lake, started) for fault in faults]
    problems = [
        *_sender_problems(sender),
        *_broker_problems(faults, sender),
        *_lake_problems(sender.acked_ids, lake),
        *_store_problems(sender.acked_ids, stored),
        *_profile_problems(sender.expected, profiles_in_store, "store"),
        *_profile_problems(sender.expected, profiles_in_api, "API"),
        *(f"{name} exited by itself (code {code})" for name, code in pipeline.exited().items()),
    ]
    if drain_s is None:
        problems.append(f"the pipeline did not drain within {DRAIN_TIMEOUT_S:.0f} s")
    return {
        "rate": plan.rate,
        "customers": plan.customers,
        "workers": plan.workers,
        "load_s": round(max((a["answered"] for a in sender.answers), default=started) - started, 1),
        "events_made": sender.made,
        "events_acknowledged": len(sender.acked_ids),
        "statuses": dict(statuses),
        # the baseline: event -> profile delay before the first kill, in the same run
        "steady_freshness_s": steady,
        "faults": figures,
        "broker_down_probes": next((f.probes for f in faults if f.name == "broker"), []),
        "drain_s": drain_s,
        "problems": problems,
    }


def _freshness(conn: psycopg.Connection, ids: list[str]) -> dict[str, float | None]:
    """p50, p95 and max of receipt -> resolution of these events, in seconds."""
    delay = "extract(epoch FROM resolved_at - received_at)"
    row = conn.execute(
        f"SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY {delay}),"
        f" percentile_cont(0.95) WITHIN GROUP (ORDER BY {delay}), max({delay})"
        " FROM events WHERE source = %s AND message_id = ANY(%s)",
        (SOURCE, ids),
    ).fetchone()
    return {
        name: None if value is None else round(float(value), 3)
        for name, value in zip(("p50", "p95", "max"), row, strict=True)
    }


def _stored(conn: psycopg.Connection) -> dict[str, float | None]:
    """messageId -> resolved_at (epoch seconds, None while unresolved) of the source's events."""
    rows = conn.execute(
        "SELECT message_id, extract(epoch FROM resolved_at) FROM events WHERE source = %s",
        (SOURCE,),
    ).fetchall()
    return {message_id: float(at) if at is not None else None for message_id, at in rows}


def _read_lake(root: Path) -> dict[str, list[float]]:
    """messageId -> the modification time of each lake file that holds it (source `faults`)."""
    found: dict[str, list[float]] = {}
    for path in sorted(root.rglob("*.parquet")) if root.is_dir() else ():
        if path.name.startswith("."):  # a temporary file, not part of the lake
            continue
        table = pq.read_table(path, columns=["source", "message_id"])
        written = path.stat().st_mtime
        for source, message_id in zip(
            table.column("source").to_pylist(), table.column("message_id").to_pylist(), strict=True
        ):
            if source == SOURCE:
                found.setdefault(message_id, []).append(written)
    return found


def _profiles_in_store(conn: psycopg.Connection) -> dict[str, tuple[int, int, Decimal]]:
    rows = conn.execute(
        "SELECT i.id_value, p.event_count, p.order_count, p.revenue FROM identifiers i"
        " JOIN profiles p ON p.profile_id = i.profile_id"
        " WHERE i.id_type = 'user_id' AND p.merged_into IS NULL"
    ).fetchall()
    return {user: (events, orders, Decimal(revenue)) for user, events, orders, revenue in rows}


def _profiles_in_api(pipeline: Pipeline, users: list[str]) -> dict[str, tuple[int, int, Decimal]]:
    found = {}
    headers = {"Authorization": f"Bearer {pipeline.token}"}
    with httpx.Client(base_url=pipeline.url, headers=headers, timeout=10) as http:
        for user in users:
            answer = http.get(f"/v1/profiles/{user}")
            if answer.status_code == 200:
                doc = _DECODER.decode(answer.content)
                found[user] = (doc["event_count"], doc["order_count"], Decimal(doc["revenue"]))
    return found


def _catch_up(
    fault: Fault,
    sender: Sender,
    stored: dict[str, float | None],
    lake: dict[str, list[float]],
    started: float,
) -> dict[str, Any]:
    """From the restart until every event acknowledged before it was in a profile, and in the
    lake (0 when all of them already were)."""
    before = [i for at, ids in sender.acks if at < fault.restarted_at for i in ids]
    resolved = [stored.get(i) for i in before]
    written = [min(lake[i]) if i in lake else None for i in before]
    acked_after = [at for at, _ids in sender.acks if at >= fault.restarted_at]
    return {
        "fault": fault.name,
        "killed_at_s": round(fault.killed_at - started, 2),
        "down_s": round(fault.restarted_at - fault.killed_at, 2),
        "ready_s": _since(fault.restarted_at, fault.ready_at),
        "events_acknowledged_before_restart": len(before),
        "pending_at_restart": sum(1 for at in resolved if at is None or at > fault.restarted_at),
        "catch_up_profiles_s": _latest_since(fault.restarted_at, resolved),
        "catch_up_lake_s": _latest_since(fault.restarted_at, written),
        "first_profile_update_after_restart_s": _since(
            fault.restarted_at, min(_resolved_after(fault, sender, stored), default=None)
        ),
        "first_ack_after_restart_s": _since(fault.restarted_at, min(acked_after, default=None)),
    }


def _resolved_after(fault: Fault, sender: Sender, stored: dict[str, float | None]) -> list[float]:
    """When the events acknowledged after the restart were resolved into their profiles."""
    after = [i for at, ids in sender.acks if at >= fault.restarted_at for i in ids]
    # a batch the killed gateway published but never answered is acknowledged again after the
    # restart, and may have been resolved before it: only resolutions after the restart count
    return [at for i in after if (at := stored.get(i)) is not None and at >= fault.restarted_at]


def _since(start: float, moment: float | None) -> float | None:
    return None if moment is None else round(moment - start, 2)


def _latest_since(start: float, moments: list[float | None]) -> float | None:
    """Seconds from `start` to the latest moment (0 if all were before); None if one never
    happened."""
    known = [moment for moment in moments if moment is not None]
    if len(known) < len(moments):
        return None
    return round(max(0.0, max(known, default=start) - start), 2)


def _sender_problems(sender: Sender) -> list[str]:
    problems = []
    if sender.abandoned:
        lost = sender.abandoned
        problems.append(f"{len(lost)} events never acknowledged: {lost[:3]}")
    if sender.refused:
        problems.append(f"{len(sender.refused)} events refused with a 4xx")
    errors = Counter(
        str(status)
        for a in sender.answers
        if isinstance(status := a["status"], int) and status >= 500 and status != 503
    )
    if errors:
        problems.append(f"server errors answered to the client: {dict(errors)}")
    return problems


def _broker_problems(faults: list[Fault], sender: Sender) -> list[str]:
    """While the broker is dead: 503 with Retry-After (no hang, no 500), and never a 200."""
    problems = []
    for fault in (f for f in faults if f.name == "broker"):
        if not fault.probes:
            problems.append("no request reached the gateway while the broker was down")
        for probe in fault.probes:
            if probe["status"] != 503 or not probe["retry_after"]:
                problems.append(f"while the broker was down the gateway answered {probe}")
        dead = (fault.killed_at + BROKER_DEAD_AFTER_S, fault.restarted_at)
        impossible = [
            a for a in sender.answers
            if a["status"] == 200 and a["sent"] > dead[0] and a["answered"] < dead[1]
        ]  # fmt: skip
        if impossible:
            problems.append(f"{len(impossible)} requests got 200 while the broker was dead")
    return problems


def _lake_problems(acked: list[str], lake: dict[str, list[float]]) -> list[str]:
    missing = [i for i in acked if i not in lake]
    doubled = [i for i, files in lake.items() if len(files) > 1]
    unknown = set(lake) - set(acked)
    problems = []
    if missing:
        problems.append(f"{len(missing)} acknowledged events missing from the lake: {missing[:3]}")
    if doubled:
        problems.append(f"{len(doubled)} events in the lake more than once: {doubled[:3]}")
    if unknown:
        problems.append(f"{len(unknown)} events in the lake were never acknowledged")
    if len(set(acked)) != len(acked):
        problems.append("the client was acknowledged twice for some events")
    return problems


def _store_problems(acked: list[str], stored: dict[str, float | None]) -> list[str]:
    missing = [i for i in acked if i not in stored]
    unresolved = [i for i in acked if i in stored and stored[i] is None]
    problems = []
    if missing:
        problems.append(f"{len(missing)} acknowledged events not stored: {missing[:3]}")
    if unresolved:
        problems.append(f"{len(unresolved)} stored events never resolved: {unresolved[:3]}")
    return problems


def _profile_problems(
    expected: dict[str, list[Any]], found: dict[str, tuple[int, int, Decimal]], where: str
) -> list[str]:
    """Per customer: (events, orders, revenue) equal to the sums of the acknowledged events."""
    wrong = {
        user: (tuple(counts), found.get(user))
        for user, counts in expected.items()
        if found.get(user) != tuple(counts)
    }
    if not wrong:
        return []
    examples = list(wrong.items())[:3]
    return [f"{len(wrong)} profiles wrong in the {where} (expected, found): {examples}"]


def summary_line(result: dict[str, Any]) -> str:
    """One line for a log or a note: the catch-up time of each kill."""
    parts = [
        f"{f['fault']} {f['catch_up_profiles_s']} s"
        f" (lake {f['catch_up_lake_s']} s, {f['pending_at_restart']} pending)"
        for f in result["faults"]
    ]
    steady = result["steady_freshness_s"]
    return (
        f"catch-up after restart at {result['rate']} events/s, "
        f"{result['events_acknowledged']} events: "
        + "; ".join(parts)
        + f"; steady event -> profile p95 {steady['p95']} s"
    )
