"""The load generator of `bench/ingest.py`: one process, raw asyncio streams, keep-alive.

Run by ingest.py as a child process (so it does not share a core's interpreter with the server);
it prints one JSON object on stdout. Requests are built before the clock starts: each request
is a byte template in which only the fixed-width messageId digits are patched per request, so
every event carries a unique messageId while costing the generator a few microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gzip
import json
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

#: Only the local machine is ever a target.
HOST = "127.0.0.1"

#: Digits of the per-process event counter inside a messageId; fixed so Content-Length is too.
COUNTER_DIGITS = 12
_SLOT = b"#" * COUNTER_DIGITS

#: Distinct events per process. Requests are templates reused with fresh messageIds, so the
#: enrichers' caches (user agent, IP) see this many distinct events, as with a steady audience.
DISTINCT_EVENTS = 20_000

#: Gzip bodies cannot be patched, so they are compressed up front; this many per process,
#: then reused (messageIds repeat only beyond this; the gateway does not de-duplicate).
GZIP_POOL = 400

#: Seconds allowed after the window for in-flight requests before connections are cancelled.
GRACE_S = 10.0

_USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/125.0.6422.165 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "Mozilla/5.0 (Linux; Android 13; Redmi Note 12) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36 Zalo/24.05",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/125.0.0.0 Safari/537.36 Edg/125.0.0.0",
    "Mozilla/5.0 (iPad; CPU OS 16_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "CriOS/126.0.6478.54 Mobile/15E148 Safari/604.1",
)

_PRODUCTS = (
    ("P-1001", "Áo thun cotton", "Thời trang", 189000),
    ("P-1002", "Giày chạy bộ", "Thể thao", 1250000),
    ("P-1003", "Wireless earbuds", "Electronics", 890000),
    ("P-1004", "Cà phê rang xay 500g", "Thực phẩm", 145000),
    ("P-1005", "Backpack 20L", "Travel", 450000),
    ("P-1006", "Nồi chiên không dầu", "Gia dụng", 1990000),
)

_NAMES = ("Nguyễn Văn An", "Trần Thị Bình", "Lê Minh Châu", "Jane Doe")

_PAGES = ("/", "/san-pham", "/gio-hang", "/thanh-toan", "/blog/khuyen-mai", "/account")


@dataclass
class Options:
    """What one load-generator process does."""

    port: int
    mode: str  # "batch" or "single"
    connections: int
    start_at: float  # wall-clock (time.time) start of the measured window
    duration_s: float
    max_requests: int
    prefix: str
    write_key: str
    batch_size: int = 100
    use_gzip: bool = False
    client_ips: str = "public"
    seed: int = 1


@dataclass
class Stats:
    """What happened, split into the measured window and the whole run."""

    latencies_us: list[int] = field(default_factory=list)
    window_requests: int = 0
    window_events: int = 0
    window_non_200: int = 0
    sent_requests: int = 0
    acked_requests: int = 0
    acked_events: int = 0
    accepted_in_body: int = 0
    rejected_in_body: int = 0
    status_counts: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    late_s: float = 0.0


def main(argv: list[str] | None = None) -> int:
    """Parse options, run the load, print the figures as one JSON object."""
    options = _parse(argv)
    factory = RequestFactory(options)
    stats, cpu_s = asyncio.run(_run(options, factory))
    print(json.dumps(_summary(options, stats, cpu_s, factory)))
    return 0


class RequestFactory:
    """Whole HTTP requests, ready to write; each call hands out fresh messageIds."""

    def __init__(self, options: Options) -> None:
        self._options = options
        self._counter = 0
        self._next_template = 0
        rng = random.Random(options.seed)
        self.events_per_request = options.batch_size if options.mode == "batch" else 1
        bodies = [_body(options, rng) for _ in range(DISTINCT_EVENTS // self.events_per_request)]
        self.reused_message_ids = False
        if options.use_gzip:
            self._pool = [self._gzip_request(bodies[i % len(bodies)]) for i in range(GZIP_POOL)]
        else:
            self._templates = [self._template(body) for body in bodies]
        self.body_bytes = sum(len(body) for body in bodies) // len(bodies)

    def next(self) -> bytes:
        """The next request's bytes."""
        index = self._next_template
        self._next_template += 1
        if self._options.use_gzip:
            if self._next_template > GZIP_POOL:
                self.reused_message_ids = True
            return self._pool[index % GZIP_POOL]
        buffer, offsets = self._templates[index % len(self._templates)]
        for offset in offsets:
            buffer[offset : offset + COUNTER_DIGITS] = b"%012d" % self._counter
            self._counter += 1
        return bytes(buffer)

    def _template(self, body: bytes) -> tuple[bytearray, list[int]]:
        head = _head(self._options, len(body), gzipped=False)
        request = bytearray(head + body)
        offsets = []
        at = request.find(_SLOT)
        while at != -1:
            offsets.append(at)
            at = request.find(_SLOT, at + COUNTER_DIGITS)
        return request, offsets

    def _gzip_request(self, body: bytes) -> bytes:
        patched = bytearray(body)
        at = patched.find(_SLOT)
        while at != -1:
            patched[at : at + COUNTER_DIGITS] = b"%012d" % self._counter
            self._counter += 1
            at = patched.find(_SLOT, at + COUNTER_DIGITS)
        compressed = gzip.compress(bytes(patched), compresslevel=6)
        return _head(self._options, len(compressed), gzipped=True) + compressed


def _head(options: Options, length: int, gzipped: bool) -> bytes:
    path = "/v1/batch" if options.mode == "batch" else "/v1/track"
    auth = base64.b64encode(f"{options.write_key}:".encode()).decode()
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {HOST}:{options.port}",
        f"Authorization: Basic {auth}",
        "Content-Type: application/json",
        f"Content-Length: {length}",
        "User-Agent: analytics-python/2.3.3",
    ]
    if gzipped:
        lines.append("Content-Encoding: gzip")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _body(options: Options, rng: random.Random) -> bytes:
    """One request body: a batch of mixed events, or one track event for /v1/track."""
    sent_at = datetime.now(UTC)
    if options.mode == "single":
        return _json(_track(options, rng, sent_at, "Order Completed"))
    events = [_any_event(options, rng, sent_at) for _ in range(options.batch_size)]
    return _json({"batch": events, "sentAt": _iso(sent_at), "context": {"library": _LIBRARY}})


_LIBRARY = {"name": "analytics-python", "version": "2.3.3"}


def _any_event(options: Options, rng: random.Random, sent_at: datetime) -> dict[str, Any]:
    roll = rng.random()
    if roll < 0.15:
        return _track(options, rng, sent_at, "Order Completed")
    if roll < 0.40:
        return _track(options, rng, sent_at, "Product Viewed")
    if roll < 0.50:
        return _track(options, rng, sent_at, "Product Added")
    if roll < 0.85:
        return _page(options, rng, sent_at)
    return _identify(options, rng, sent_at)


def _common(options: Options, rng: random.Random, sent_at: datetime, kind: str) -> dict[str, Any]:
    user = rng.randrange(200_000)
    event: dict[str, Any] = {
        "type": kind,
        "messageId": f"{options.prefix}-{_SLOT.decode()}",
        "anonymousId": f"anon-{user:08x}-{rng.randrange(16**8):08x}",
        # a real event was recorded a little before it was sent
        "timestamp": _iso(sent_at - timedelta(milliseconds=rng.randrange(50, 30_000))),
        "sentAt": _iso(sent_at),
        "context": {
            "ip": _client_ip(user, options.client_ips),
            "userAgent": rng.choice(_USER_AGENTS),
            "locale": rng.choice(("vi-VN", "en-US", "en-GB")),
            "library": {"name": "analytics.js", "version": "5.2.0"},
            "page": {"path": rng.choice(_PAGES), "referrer": "https://www.google.com/"},
            "sessionId": rng.randrange(10**12),
        },
    }
    if rng.random() < 0.6:  # many visitors are logged in
        event["userId"] = f"user-{user}"
    return event


def _track(options: Options, rng: random.Random, sent_at: datetime, name: str) -> dict[str, Any]:
    event = _common(options, rng, sent_at, "track")
    event["event"] = name
    products = [_product(rng) for _ in range(rng.randint(1, 3))]
    if name == "Order Completed":
        total = sum(p["price"] * p["quantity"] for p in products)
        event["properties"] = {
            "order_id": f"ORD-{rng.randrange(10**9)}",
            "total": total,
            "revenue": round(total / 1.1, 2),
            "shipping": 30000,
            "currency": "VND",
            "coupon": rng.choice((None, "TET2025", "FREESHIP")),
            "products": products,
        }
    else:
        event["properties"] = {**products[0], "currency": "VND"}
    return event


def _page(options: Options, rng: random.Random, sent_at: datetime) -> dict[str, Any]:
    event = _common(options, rng, sent_at, "page")
    path = rng.choice(_PAGES)
    event["name"] = path.strip("/") or "home"
    event["properties"] = {
        "path": path,
        "url": f"https://shop.example.vn{path}",
        "title": "Cửa hàng — khuyến mãi",
        "referrer": "https://www.google.com/",
    }
    return event


def _identify(options: Options, rng: random.Random, sent_at: datetime) -> dict[str, Any]:
    event = _common(options, rng, sent_at, "identify")
    number = rng.randrange(10**8)
    event["userId"] = f"user-{number}"
    event["traits"] = {
        "email": f"  Khach.Hang{number}@Example.VN ",
        "phone": f"09{number:08d}",
        "name": rng.choice(_NAMES),
        "city": rng.choice(("Hà Nội", "TP. Hồ Chí Minh", "Đà Nẵng")),
        "createdAt": "2024-03-01T08:00:00Z",
    }
    return event


def _product(rng: random.Random) -> dict[str, Any]:
    product_id, name, category, price = rng.choice(_PRODUCTS)
    return {
        "product_id": product_id,
        "sku": f"SKU-{product_id[2:]}",
        "name": name,
        "category": category,
        "price": price,
        "quantity": rng.randint(1, 3),
    }


#: First octets of public ranges (mostly Vietnamese providers), for `client_ips="public"`.
_PUBLIC_FIRST_OCTETS = (14, 27, 42, 113, 115, 116, 171, 183, 203, 8, 51, 92)


def _client_ip(user: int, kind: str) -> str:
    """A stable address per visitor: public ones as real traffic has, or private (10/8)."""
    spread = user * 2_654_435_761 % 2**24  # scatter neighbouring users over the range
    first = _PUBLIC_FIRST_OCTETS[user % len(_PUBLIC_FIRST_OCTETS)] if kind == "public" else 10
    return f"{first}.{spread >> 16}.{(spread >> 8) & 255}.{max(1, spread & 255)}"


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


async def _run(options: Options, factory: RequestFactory) -> tuple[Stats, float]:
    """Drive every connection until the window closes; CPU seconds used during the window."""
    stats = Stats()
    offset = time.time() - time.perf_counter()
    window = (options.start_at - offset, options.start_at - offset + options.duration_s)
    stats.late_s = max(0.0, time.perf_counter() - window[0])  # no warm-up left if late
    budget = _RequestBudget(options.max_requests)
    tasks = [
        asyncio.create_task(_connection(options, factory, stats, window, budget))
        for _ in range(options.connections)
    ]
    cpu_before = await _cpu_at(window[0])
    cpu_after = asyncio.create_task(_cpu_at(window[1]))
    timeout = max(0.0, window[1] - time.perf_counter()) + GRACE_S
    _done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:  # a stuck server must not keep the bench alive
        task.cancel()
        stats.errors.append("a connection was still waiting at the deadline")
    await asyncio.gather(*pending, return_exceptions=True)
    return stats, (await cpu_after) - cpu_before


@dataclass
class _RequestBudget:
    """A cap on requests shared by all connections of the process."""

    left: int

    def take(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        return True


async def _cpu_at(when: float) -> float:
    await asyncio.sleep(max(0.0, when - time.perf_counter()))
    return time.process_time()


async def _connection(
    options: Options,
    factory: RequestFactory,
    stats: Stats,
    window: tuple[float, float],
    budget: _RequestBudget,
) -> None:
    """One keep-alive connection sending requests back to back until the window ends."""
    reader, writer = await asyncio.open_connection(HOST, options.port)
    try:
        while time.perf_counter() < window[1] and budget.take():
            request = factory.next()
            began = time.perf_counter()
            writer.write(request)
            await writer.drain()
            status, body, keep_alive = await _read_response(reader)
            ended = time.perf_counter()
            _record(stats, factory.events_per_request, status, body, began, ended, window)
            if not keep_alive:
                writer.close()
                reader, writer = await asyncio.open_connection(HOST, options.port)
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        stats.errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        writer.close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Status, body and whether the server keeps the connection open."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lowered = head.lower()
    at = lowered.find(b"\r\ncontent-length:")
    if at == -1:
        raise ValueError("a response without Content-Length; this client does not read chunks")
    end = lowered.find(b"\r\n", at + 2)
    length = int(lowered[at + 17 : end])
    body = await reader.readexactly(length)
    return status, body, b"\r\nconnection: close" not in lowered


def _record(
    stats: Stats,
    events: int,
    status: int,
    body: bytes,
    began: float,
    ended: float,
    window: tuple[float, float],
) -> None:
    stats.sent_requests += 1
    key = str(status)
    stats.status_counts[key] = stats.status_counts.get(key, 0) + 1
    if status == 200:
        stats.acked_requests += 1
        stats.acked_events += events
        stats.accepted_in_body += _int_field(body, b'"accepted":')
        stats.rejected_in_body += _int_field(body, b'"rejected":')
    # completions inside the window count, whenever they began: an unbiased rate
    if window[0] <= ended <= window[1]:
        stats.window_requests += 1
        stats.latencies_us.append(int((ended - began) * 1_000_000))
        if status == 200:
            stats.window_events += events
        else:
            stats.window_non_200 += 1


def _int_field(body: bytes, name: bytes) -> int:
    """An integer field of a small JSON body, without decoding the whole of it."""
    at = body.find(name)
    if at == -1:
        return 0
    start = at + len(name)
    end = start
    while end < len(body) and body[end : end + 1].isdigit():
        end += 1
    return int(body[start:end] or 0)


def _summary(
    options: Options, stats: Stats, cpu_s: float, factory: RequestFactory
) -> dict[str, Any]:
    return {
        "window_s": options.duration_s,
        "window_requests": stats.window_requests,
        "window_events": stats.window_events,
        "window_non_200": stats.window_non_200,
        "latencies_us": stats.latencies_us,
        "sent_requests": stats.sent_requests,
        "acked_requests": stats.acked_requests,
        "acked_events": stats.acked_events,
        "accepted_in_body": stats.accepted_in_body,
        "rejected_in_body": stats.rejected_in_body,
        "status_counts": stats.status_counts,
        "errors": stats.errors[:20],
        "error_count": len(stats.errors),
        "cpu_s": cpu_s,
        "late_s": stats.late_s,
        "body_bytes": factory.body_bytes,
        "reused_message_ids": factory.reused_message_ids,
    }


def _parse(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=("batch", "single"), required=True)
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--start-at", type=float, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--max-requests", type=int, required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--write-key", required=True)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--gzip", action="store_true")
    parser.add_argument("--client-ips", choices=("public", "private"), default="public")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    return Options(
        port=args.port,
        mode=args.mode,
        connections=args.connections,
        start_at=args.start_at,
        duration_s=args.duration,
        max_requests=args.max_requests,
        prefix=args.prefix,
        write_key=args.write_key,
        batch_size=args.batch_size,
        use_gzip=args.gzip,
        client_ips=args.client_ips,
        seed=args.seed,
    )


if __name__ == "__main__":
    sys.exit(main())
