"""An ASGI middleware that inflates gzip request bodies, capped so a small compressed body
cannot expand into an unbounded one (Litestar's size limit only sees compressed bytes)."""

from __future__ import annotations

import zlib
from typing import Any

import msgspec

Scope = dict[str, Any]


class GzipRequestMiddleware:
    """Inflate `Content-Encoding: gzip` bodies up to `max_bytes`; answer 400 beyond that."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not _is_gzip(scope):
            await self.app(scope, receive, send)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes * 4:
                break
        try:
            inflated = _inflate(body, self.max_bytes)
        except (zlib.error, ValueError) as exc:
            await _reject(send, "invalid_gzip", f"the gzip body could not be read: {exc}")
            return
        if inflated is None:
            await _reject(send, *_too_large(scope["path"], self.max_bytes))
            return
        headers = [
            (k, v) for k, v in scope["headers"] if k not in (b"content-encoding", b"content-length")
        ]
        headers.append((b"content-length", str(len(inflated)).encode()))
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": inflated, "more_body": False}

        await self.app({**scope, "headers": headers}, replay, send)


def _is_gzip(scope: Scope) -> bool:
    return any(k == b"content-encoding" and b"gzip" in v.lower() for k, v in scope["headers"])


def _inflate(body: bytes, limit: int) -> bytes | None:
    inflater = zlib.decompressobj(wbits=31)
    out = inflater.decompress(body, limit + 1)
    if len(out) > limit or inflater.unconsumed_tail:
        return None
    if not inflater.eof:
        raise ValueError("truncated gzip stream")
    return out


def _too_large(path: str, max_bytes: int) -> tuple[str, str]:
    """Code and message for an inflated body over the limit, for a batch or a single event."""
    if path.rstrip("/").endswith(("/batch", "/import")):
        return "batch_too_large", (
            f"the inflated body exceeds {max_bytes:,} bytes; a batch may be at most 500 KB: "
            "send fewer events per request"
        )
    return "event_too_large", (
        f"the inflated body exceeds {max_bytes:,} bytes; an event may be at most 32 KB: "
        "trim its properties or traits"
    )


async def _reject(send: Any, code: str, message: str) -> None:
    payload = msgspec.json.encode({"code": code, "message": message})
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
