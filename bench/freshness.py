"""Event -> profile freshness: receipt at the gateway to resolution into a profile, under a
steady paced load, beside the bus floor (XADD to XREADGROUP on the same Valkey) in the same run.

    python bench/freshness.py              # 1,000 events/s for 20 s
    python bench/freshness.py --quick      # 1,000 events/s for 8 s
    python bench/freshness.py --rate 10000 # the second target of DESIGN.md
    python bench/freshness.py --json       # one JSON object on stdout
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from decimal import Decimal
from typing import Any

HOST = "127.0.0.1"
SOURCE = "bench-freshness"

#: A request every 10 ms: what a few hundred Segment clients, each flushing its small queue,
#: look like to the gateway. The batch grows with the rate (10 events at 1,000/s, 100 at
#: 10,000/s) so the request rate stays at 100/s and the figure measures the pipeline, not the
#: per-request cost already measured by ingest.py.
TICK_S = 0.010

#: Distinct users: a few thousand, so profiles are hit again and again, as with a real audience.
USERS = 5_000

#: Connections the sender may open; a tick whose request finds none idle opens another, so a
#: slow answer never delays the next tick (an open loop) up to this bound.
MAX_CONNECTIONS = 64

#: A connection idle this long is not reused: uvicorn closes keep-alive connections after 5 s.
KEEP_ALIVE_S = 4.0

#: Seconds the sender may run past its window for the last answers.
SENDER_GRACE_S = 15.0

#: Upper bound on the wait for the pipeline to resolve every sent event.
MIN_CATCH_UP_S = 60.0

#: The bus floor runs at the same rate for at most this long (it settles in a few seconds).
FLOOR_MAX_S = 10.0

#: Single events sent to the idle stack before the load, and how long to wait for each.
IDLE_PROBES = 5
IDLE_PROBE_TIMEOUT_S = 15.0

#: Targets from DESIGN.md: p95 freshness in ms at a rate.
TARGETS_P95_MS = {1_000: 1_000, 10_000: 5_000}

_PERCENTILES = (0.5, 0.95, 0.99)


def main(argv: list[str] | None = None) -> int:
    """Run the bench, or one of its child roles."""
    args = _parse(argv)
    if args.role == "sender":
        return _sender_main(json.loads(args.spec))
    if args.role == "floor-producer":
        return _floor_producer_main(json.loads(args.spec))
    report = run(args.rate, 8.0 if args.quick else args.duration, verbose=not args.json)
    print(json.dumps(report, indent=2, default=str) if args.json else render(report))
    return 0 if report["checks"]["ok"] else 1


def run(
    rate: int, duration_s: float, verbose: bool, servers: dict[str, str] | None = None
) -> dict[str, Any]:
    """Start a stack in a temporary folder, measure the floor, then the pipeline; stop it all.
    `servers` (settings such as postgres_dsn, valkey_url) puts the stack on real servers."""
    from c360.appliance.engines import free_port
    from c360.appliance.stack import Stack
    from c360.settings import load_settings

    batch = max(1, round(rate * TICK_S))
    write_key = f"bench-{uuid.uuid4().hex}"
    with tempfile.TemporaryDirectory(prefix="c360-freshness-") as tmp:
        settings = load_settings(
            {
                "data_dir": tmp,
                "host": HOST,
                "port": free_port(),
                "log_level": "WARNING",
                **(servers or {}),
            },
            environ={},
        )
        settings = dataclasses.replace(settings, write_keys={write_key: SOURCE})
        stack = Stack(settings)
        try:
            settings = stack.start()
            _say(verbose, f"stack up on {stack.url}; bus floor at {rate} events/s")
            floor = measure_floor(settings.valkey_url, rate, batch, min(duration_s, FLOOR_MAX_S))
            idle = measure_idle(stack, settings, write_key)
            _say(verbose, f"pipeline at {rate} events/s for {duration_s:.0f} s")
            sent = _run_sender(settings.port, write_key, rate, batch, duration_s)
            _say(verbose, f"sent {sent['acked_events']} events; waiting until all are resolved")
            catch_up = wait_until_resolved(stack, settings, sent["acked_ids"], duration_s)
            pipeline = read_freshness(settings.postgres_dsn, sent["acked_ids"])
            checks = check_counts(settings.postgres_dsn, sent, pipeline, catch_up)
        finally:
            stack.stop()
    report = build_report(rate, batch, duration_s, floor, sent, pipeline, catch_up, checks)
    report["idle_single_event_ms"] = idle
    return report


def _say(verbose: bool, text: str) -> None:
    if verbose:
        print(f"... {text}", file=sys.stderr, flush=True)


# --- the bus floor ----------------------------------------------------------------------------


def measure_floor(valkey_url: str, rate: int, batch: int, duration_s: float) -> dict[str, Any]:
    """Delay from XADD (a producer process) to XREADGROUP (a consumer thread here) on the
    pipeline's Valkey, one entry of `batch` events every tick, each weighted by its events."""
    import redis

    stream = f"bench-floor-{uuid.uuid4().hex}"
    client = redis.Redis.from_url(valkey_url)
    client.xgroup_create(stream, "floor", id="0", mkstream=True)
    delays: list[float] = []
    stop = threading.Event()
    consumer = threading.Thread(target=_floor_consume, args=(client, stream, delays, stop))
    consumer.start()
    try:
        spec = {
            "url": valkey_url,
            "stream": stream,
            "rate": rate,
            "batch": batch,
            "duration": duration_s,
        }
        _run_child("floor-producer", spec, duration_s + SENDER_GRACE_S)
        time.sleep(0.5)  # the last entries reach the consumer
    finally:
        stop.set()
        consumer.join(5)
        client.delete(stream)
        client.close()
    return {"events": len(delays), "duration_s": duration_s, **_percentiles_ms(delays)}


def _floor_consume(client: Any, stream: str, delays: list[float], stop: threading.Event) -> None:
    while not stop.is_set():
        replies = client.xreadgroup("floor", "c", {stream: ">"}, count=1000, block=200)
        now = time.time()
        for _name, entries in replies or ():
            for entry_id, fields in entries:
                delays.extend([now - float(fields[b"ts"])] * int(fields[b"n"]))
                client.xack(stream, "floor", entry_id)


def _floor_producer_main(spec: dict[str, Any]) -> int:
    """Child role: XADD one entry of `batch` events' worth of bytes every tick."""
    import redis

    client = redis.Redis.from_url(spec["url"])
    body = _batch_body(random.Random(7), "floor", 0, spec["batch"])[0]
    ticks = int(spec["duration"] / TICK_S)
    start = time.perf_counter() + 0.2
    for tick in range(ticks):
        _sleep_until(start + tick * TICK_S)
        client.xadd(spec["stream"], {"ts": repr(time.time()), "n": spec["batch"], "body": body})
    client.close()
    return 0


def _sleep_until(moment: float) -> None:
    pause = moment - time.perf_counter()
    if pause > 0:
        time.sleep(pause)


def measure_idle(stack: Any, settings: Any, write_key: str) -> list[float | None]:
    """Freshness of a single event sent to the idle stack, IDLE_PROBES times: the fixed cost of
    the path, apart from any backlog the load builds."""
    import httpx
    import psycopg

    delays: list[float | None] = []
    with psycopg.connect(settings.postgres_dsn, autocommit=True) as conn:
        for probe in range(IDLE_PROBES):
            # a user outside the sender's range, so the per-user checks stay exact
            event = _event(random.Random(probe), USERS + probe, f"idle-{uuid.uuid4().hex}", "")
            event["timestamp"] = _iso(time.time())
            body = json.dumps({"batch": [event]}, ensure_ascii=False).encode()
            answer = httpx.post(
                f"{stack.url}/v1/batch",
                content=body,
                auth=(write_key, ""),
                headers={"Content-Type": "application/json"},
                timeout=10,
            )
            answer.raise_for_status()
            deadline = time.monotonic() + IDLE_PROBE_TIMEOUT_S
            delay = None
            while delay is None and time.monotonic() < deadline:
                time.sleep(0.05)
                delay = conn.execute(
                    "SELECT extract(epoch FROM resolved_at - received_at) * 1000 FROM events"
                    " WHERE source = %s AND message_id = %s AND resolved_at IS NOT NULL",
                    (SOURCE, event["messageId"]),
                ).fetchone()
            delays.append(_round(delay[0]) if delay else None)
    return delays


# --- the pipeline -----------------------------------------------------------------------------


def _run_sender(port: int, write_key: str, rate: int, batch: int, duration_s: float) -> Any:
    spec = {
        "port": port,
        "write_key": write_key,
        "rate": rate,
        "batch": batch,
        "duration": duration_s,
        "prefix": f"fresh-{uuid.uuid4().hex[:12]}",
    }
    return _run_child("sender", spec, duration_s + SENDER_GRACE_S + 30)


def _run_child(role: str, spec: dict[str, Any], timeout: float) -> Any:
    """Run this file in another process in `role`; its one JSON line on stdout, if any."""
    child = subprocess.Popen(
        [sys.executable, __file__, "--role", role, "--spec", json.dumps(spec)],
        stdout=subprocess.PIPE,
    )
    try:
        out, _ = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        raise RuntimeError(f"the {role} process did not finish within {timeout:.0f} s") from None
    if child.returncode != 0:
        raise RuntimeError(f"the {role} process exited with code {child.returncode}")
    return json.loads(out) if out.strip() else None


def wait_until_resolved(stack: Any, settings: Any, ids: list[str], duration_s: float) -> Any:
    """Poll until every acknowledged event has a resolved_at; bounded by a deadline."""
    import psycopg

    timeout = max(MIN_CATCH_UP_S, 6 * duration_s)
    started = time.monotonic()
    resolved = 0
    with psycopg.connect(settings.postgres_dsn, autocommit=True) as conn:
        while time.monotonic() - started < timeout:
            stack.check_alive()
            resolved = conn.execute(
                "SELECT count(*) FROM events WHERE source = %s AND message_id = ANY(%s)"
                " AND resolved_at IS NOT NULL",
                (SOURCE, ids),
            ).fetchone()[0]
            if resolved >= len(ids):
                break
            time.sleep(0.25)
    return {
        "resolved": resolved,
        "seconds_after_send": round(time.monotonic() - started, 2),
        "timed_out": resolved < len(ids),
    }


def read_freshness(dsn: str, ids: list[str]) -> dict[str, Any]:
    """resolved_at - received_at over exactly the acknowledged events, in ms."""
    import psycopg

    delay = "extract(epoch FROM resolved_at - received_at) * 1000"
    cuts = ", ".join(f"percentile_cont({p}) WITHIN GROUP (ORDER BY {delay})" for p in _PERCENTILES)
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            f"SELECT count(*), count(resolved_at), {cuts}, max({delay}),"
            " min(received_at), max(received_at),"
            " percentile_cont(0.95) WITHIN GROUP (ORDER BY"
            "  extract(epoch FROM stored_at - received_at) * 1000)"
            " FROM events WHERE source = %s AND message_id = ANY(%s)",
            (SOURCE, ids),
        ).fetchone()
        by_second = conn.execute(
            f"SELECT floor(extract(epoch FROM received_at - %s)),"
            f" percentile_cont(0.95) WITHIN GROUP (ORDER BY {delay})"
            " FROM events WHERE source = %s AND message_id = ANY(%s) GROUP BY 1 ORDER BY 1",
            (row[6], SOURCE, ids),
        ).fetchall()
    count, resolved, p50, p95, p99, worst, first, last, stored_p95 = row
    return {
        "stored": count,
        "resolved": resolved,
        "p50_ms": _round(p50),
        "p95_ms": _round(p95),
        "p99_ms": _round(p99),
        "max_ms": _round(worst),
        "received_span_s": (last - first).total_seconds() if first and last else None,
        # how much of the delay is before F2 stored the event (gateway, bus, F2) and how much
        # after it (F3): where to look first when the figure is high
        "stored_p95_ms": _round(stored_p95),
        # a delay that grows second by second is a backlog; a flat one is a fixed cost
        "p95_ms_by_second": [_round(p) for _second, p in by_second],
    }


def check_counts(
    dsn: str, sent: dict[str, Any], pipeline: dict[str, Any], catch_up: dict[str, Any]
) -> dict[str, Any]:
    """Every acknowledged event stored and resolved once; each user's profile holds exactly the
    events, orders and revenue the sender counted."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT i.id_value, p.event_count, p.order_count, p.revenue FROM identifiers i"
            " JOIN profiles p ON p.profile_id = i.profile_id"
            " WHERE i.id_type = 'user_id' AND p.merged_into IS NULL",
        ).fetchall()
        merges = conn.execute("SELECT count(*) FROM merges").fetchone()[0]
    stored = {user: (events, orders, Decimal(revenue)) for user, events, orders, revenue in rows}
    expected = {
        user: (events, orders, Decimal(revenue))
        for user, (events, orders, revenue) in sent["per_user"].items()
    }
    wrong = sorted(user for user in expected if stored.get(user) != expected[user])
    acked = len(sent["acked_ids"])
    checks = {
        "acked_events": acked,
        "stored": pipeline["stored"],
        "resolved": pipeline["resolved"],
        "users_sent": len(expected),
        "users_wrong": len(wrong),
        "users_wrong_examples": [(u, expected[u], stored.get(u)) for u in wrong[:3]],
        "merges": merges,
        "non_200": sent["non_200"],
        "sender_errors": sent["errors"][:5],
    }
    checks["ok"] = (
        acked == pipeline["stored"] == pipeline["resolved"]
        and not wrong
        and not catch_up["timed_out"]
        and sent["non_200"] == 0
        and not sent["errors"]
    )
    return checks


# --- the sender (a child process) -------------------------------------------------------------


def _sender_main(spec: dict[str, Any]) -> int:
    """Child role: send `batch` events every tick for `duration` s; print what was acknowledged."""
    result = asyncio.run(_send(spec))
    print(json.dumps(result, default=str))
    return 0


async def _send(spec: dict[str, Any]) -> dict[str, Any]:
    rng = random.Random(360)
    per_user: dict[str, list[Any]] = {}
    state: dict[str, Any] = {
        "acked_ids": [],
        "non_200": 0,
        "errors": [],
        "idle": [],
        "open": 0,
        "late_ticks": 0,
        "max_late_ms": 0.0,
        "retries": 0,
    }
    ticks = int(spec["duration"] / TICK_S)
    tasks: set[asyncio.Task[None]] = set()
    start = time.perf_counter() + 0.2
    for tick in range(ticks):
        await asyncio.sleep(max(0.0, start + tick * TICK_S - time.perf_counter()))
        late = (time.perf_counter() - start - tick * TICK_S) * 1000
        state["max_late_ms"] = max(state["max_late_ms"], late)
        state["late_ticks"] += late > TICK_S * 1000
        body, ids, counts = _batch_body(rng, spec["prefix"], tick * spec["batch"], spec["batch"])
        task = asyncio.create_task(_post(spec, state, body, ids, counts, per_user))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    sent_s = time.perf_counter() - start
    if tasks:
        _done, pending = await asyncio.wait(tasks, timeout=SENDER_GRACE_S)
        for task in pending:
            task.cancel()
            state["errors"].append("a request was still waiting at the deadline")
    for _reader, writer, _used in state.pop("idle"):
        writer.close()
    acked = len(state["acked_ids"])
    return {
        **state,
        "per_user": {u: [e, o, str(r)] for u, (e, o, r) in per_user.items()},
        "ticks": ticks,
        "sent_events": ticks * spec["batch"],
        "acked_events": acked,
        "send_seconds": sent_s,
        "rate_achieved": acked / sent_s if sent_s else None,
    }


async def _post(
    spec: dict[str, Any],
    state: dict[str, Any],
    body: bytes,
    ids: list[str],
    counts: dict[str, list[Any]],
    per_user: dict[str, list[Any]],
) -> None:
    """One request on an idle keep-alive connection (or a new one, up to MAX_CONNECTIONS).
    A reused connection the server closed meanwhile (its keep-alive timeout) answers nothing;
    the request then goes once more on a new connection."""
    for attempt in range(2):
        reused, writer = False, None
        try:
            reader, writer, reused = await _connection(spec, state, fresh=attempt > 0)
            writer.write(_head(spec, len(body)) + body)
            await writer.drain()
            status = await _read_status(reader)
            break
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            if writer is not None:
                writer.close()
                state["open"] -= 1
            if attempt == 0 and reused:
                state["retries"] += 1
                continue
            state["errors"].append(f"{type(exc).__name__}: {exc}")
            return
        except _NoConnection:
            state["errors"].append("no connection free: the gateway fell behind")
            return
    state["idle"].append((reader, writer, time.perf_counter()))
    if status != 200:
        state["non_200"] += 1
        return
    state["acked_ids"].extend(ids)
    for user, (events, orders, revenue) in counts.items():
        total = per_user.setdefault(user, [0, 0, Decimal(0)])
        total[0] += events
        total[1] += orders
        total[2] += revenue


class _NoConnection(Exception):
    """Every connection the sender may open is busy."""


async def _connection(spec: dict[str, Any], state: dict[str, Any], fresh: bool) -> Any:
    """An idle connection used within KEEP_ALIVE_S (most recent first), else a new one."""
    while state["idle"] and not fresh:
        reader, writer, used = state["idle"].pop()
        if time.perf_counter() - used < KEEP_ALIVE_S:
            return reader, writer, True
        writer.close()
        state["open"] -= 1
    if state["open"] >= MAX_CONNECTIONS:
        raise _NoConnection
    state["open"] += 1
    try:
        reader, writer = await asyncio.open_connection(HOST, spec["port"])
    except OSError:
        state["open"] -= 1
        raise
    return reader, writer, False


def _head(spec: dict[str, Any], length: int) -> bytes:
    auth = base64.b64encode(f"{spec['write_key']}:".encode()).decode()
    return (
        f"POST /v1/batch HTTP/1.1\r\nHost: {HOST}:{spec['port']}\r\n"
        f"Authorization: Basic {auth}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\nUser-Agent: analytics-python/2.3.3\r\n\r\n"
    ).encode()


async def _read_status(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lowered = head.lower()
    at = lowered.find(b"\r\ncontent-length:")
    if at == -1:
        raise ValueError("a response without Content-Length")
    end = lowered.find(b"\r\n", at + 2)
    await reader.readexactly(int(lowered[at + 17 : end]))
    return int(head[9:12])


_AGENTS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/125.0.6422.165 Mobile Safari/537.36",
)
_PRODUCTS = (
    ("P-1001", "Áo thun cotton", 189_000),
    ("P-1002", "Giày chạy bộ", 1_250_000),
    ("P-1004", "Cà phê rang xay 500g", 145_000),
    ("P-1006", "Nồi chiên không dầu", 1_990_000),
)


def _batch_body(
    rng: random.Random, prefix: str, first: int, size: int
) -> tuple[bytes, list[str], dict[str, list[Any]]]:
    """A /v1/batch body of `size` events, their messageIds, and per user: events, orders,
    revenue. Every event names its user, so each user is one profile. Users are named after
    `prefix`: runs on the same servers (pipeline.py's rising rates) share no profile, so each
    run's checks compare the profiles with exactly what that run sent."""
    now = time.time()
    sent_at = _iso(now)
    events, ids, counts = [], [], {}
    for number in range(first, first + size):
        user = rng.randrange(USERS)
        timestamp = _iso(now - rng.uniform(0.05, 2.0))
        event = _event(rng, user, f"{prefix}-{number}", timestamp, audience=f"{prefix}-")
        events.append(event)
        ids.append(event["messageId"])
        tally = counts.setdefault(event["userId"], [0, 0, Decimal(0)])
        tally[0] += 1
        if event.get("event") == "Order Completed":
            tally[1] += 1
            tally[2] += Decimal(event["properties"]["revenue"])
        event["sentAt"] = sent_at
    body = {"batch": events, "sentAt": sent_at, "context": {"library": {"name": "analytics.js"}}}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(), ids, counts


def _event(
    rng: random.Random, user: int, message_id: str, timestamp: str, audience: str = ""
) -> dict[str, Any]:
    """identify (15%), Order Completed (25%), Product Viewed (40%) or page (20%); `audience`
    goes before the user's identifiers."""
    event: dict[str, Any] = {
        "messageId": message_id,
        "userId": f"user-{audience}{user}",
        "anonymousId": f"anon-{audience}{user * 2_654_435_761 % 2**32:08x}",
        "timestamp": timestamp,
        "context": {
            "ip": f"113.{user % 250}.{user // 250 % 250}.{user % 200 + 1}",
            "userAgent": _AGENTS[user % len(_AGENTS)],
            "locale": "vi-VN",
        },
    }
    roll = rng.random()
    if roll < 0.15:
        event["type"] = "identify"
        event["traits"] = {
            "email": f"khach.hang{audience}{user}@example.vn",
            "name": "Nguyễn Văn An",
            "city": rng.choice(("Hà Nội", "Đà Nẵng", "TP. Hồ Chí Minh")),
        }
        return event
    if roll < 0.80:
        product_id, name, price = rng.choice(_PRODUCTS)
        event["type"] = "track"
        if roll < 0.40:
            quantity = rng.randint(1, 3)
            event["event"] = "Order Completed"
            event["properties"] = {
                "order_id": f"ORD-{message_id}",
                "revenue": price * quantity,  # VND has no minor unit: exact as a JSON integer
                "currency": "VND",
                "products": [
                    {"product_id": product_id, "name": name, "price": price, "quantity": quantity}
                ],
            }
        else:
            event["event"] = "Product Viewed"
            event["properties"] = {"product_id": product_id, "name": name, "price": price}
        return event
    event["type"] = "page"
    event["name"] = "san-pham"
    event["properties"] = {"path": "/san-pham", "url": "https://shop.example.vn/san-pham"}
    return event


def _iso(moment: float) -> str:
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment)) + f".{int(moment % 1 * 1000):03d}Z"
    )


# --- report -----------------------------------------------------------------------------------


def _percentiles_ms(delays: list[float]) -> dict[str, float | None]:
    ordered = sorted(delays)
    if not ordered:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}

    def cut(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 2)

    return {
        "p50_ms": cut(0.5),
        "p95_ms": cut(0.95),
        "p99_ms": cut(0.99),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


def _round(value: Any) -> float | None:
    return round(float(value), 1) if value is not None else None


def build_report(
    rate: int,
    batch: int,
    duration_s: float,
    floor: dict[str, Any],
    sent: dict[str, Any],
    pipeline: dict[str, Any],
    catch_up: dict[str, Any],
    checks: dict[str, Any],
) -> dict[str, Any]:
    """One flat-enough object: the pipeline, the floor, their ratio and the checks."""
    p95, floor_p95 = pipeline["p95_ms"], floor["p95_ms"]
    target = TARGETS_P95_MS.get(rate)
    return {
        "rate_asked": rate,
        "batch_events": batch,
        "tick_ms": TICK_S * 1000,
        "duration_s": duration_s,
        "rate_achieved": round(sent["rate_achieved"] or 0, 1),
        "sender_max_late_ms": round(sent["max_late_ms"], 1),
        "sender_late_ticks": sent["late_ticks"],
        "freshness_p50_ms": pipeline["p50_ms"],
        "freshness_p95_ms": p95,
        "freshness_p99_ms": pipeline["p99_ms"],
        "freshness_max_ms": pipeline["max_ms"],
        "baseline_p50_ms": floor["p50_ms"],
        "baseline_p95_ms": floor_p95,
        "baseline_p99_ms": floor["p99_ms"],
        "baseline_max_ms": floor["max_ms"],
        "baseline_events": floor["events"],
        "baseline_duration_s": floor["duration_s"],
        "ratio_p95": round(p95 / floor_p95, 1) if p95 and floor_p95 else None,
        "target_p95_ms": target,
        "freshness_p95_ms_by_second": pipeline["p95_ms_by_second"],
        "received_to_stored_p95_ms": pipeline["stored_p95_ms"],
        "sender_retries": sent["retries"],
        "catch_up": catch_up,
        "checks": checks,
    }


def render(report: dict[str, Any]) -> str:
    """The report for a terminal."""
    r, c = report, report["checks"]
    lines = [
        f"rate {r['rate_asked']} events/s asked, {r['rate_achieved']} achieved "
        f"({r['batch_events']}-event batches every {r['tick_ms']:.0f} ms, {r['duration_s']:.0f} s;"
        f" sender at most {r['sender_max_late_ms']} ms late)",
        f"{'':22}{'p50':>10}{'p95':>10}{'p99':>10}{'max':>10}",
        "event -> profile     "
        + "".join(f"{_ms(r[f'freshness_{k}_ms']):>10}" for k in ("p50", "p95", "p99", "max")),
        "bus floor (XADD->XREADGROUP)"[:21]
        + " "
        + "".join(f"{_ms(r[f'baseline_{k}_ms']):>10}" for k in ("p50", "p95", "p99", "max")),
        f"ratio p95 pipeline / floor: {r['ratio_p95']}; of the pipeline, received -> stored"
        f" (gateway, bus, F2) p95 {_ms(r['received_to_stored_p95_ms'])}",
        "p95 by second of receipt: "
        + " ".join(_ms(v).removesuffix(" ms") for v in r["freshness_p95_ms_by_second"])
        + " ms",
        "idle stack, single events: " + ", ".join(_ms(v) for v in r["idle_single_event_ms"]),
        f"target p95 < {r['target_p95_ms']} ms" if r["target_p95_ms"] else "no target at this rate",
        f"checks: {c['acked_events']} acknowledged, {c['stored']} stored, {c['resolved']} resolved;"
        f" {c['users_sent']} users, {c['users_wrong']} with wrong totals; {c['merges']} merges;"
        f" non-200 {c['non_200']}; errors {len(c['sender_errors'])} -> "
        + ("OK" if c["ok"] else "FAILED"),
        f"all resolved {r['catch_up']['seconds_after_send']} s after the sender finished",
    ]
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=1_000, help="events per second (1,000)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load (20)")
    parser.add_argument("--quick", action="store_true", help="8 s of load")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--role", choices=("sender", "floor-producer"), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 1 <= args.rate <= 100_000 or not 1 <= args.duration <= 600:
        parser.error("--rate must be 1..100000 and --duration 1..600")
    return args


if __name__ == "__main__":
    sys.exit(main())
