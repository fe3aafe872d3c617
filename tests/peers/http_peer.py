"""What every local HTTP peer shares: a threaded server on 127.0.0.1 (port 0), a log of every
request, and failures on demand (`fail_next`). A peer module subclasses `HttpPeer` and
answers requests the way its real service does.

    peer = SomePeer().start()      # peer.url is http://127.0.0.1:<port>
    peer.fail_next(2, 503)         # the next two requests answer 503 (with Retry-After)
    release = peer.stall_next()    # the next request hangs until release.set()
    peer.requests                  # every request, accepted or not
    peer.stop()                    # or use the peer as a context manager
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

#: Longest a stalled request is held, so a test that forgets to release it still ends.
STALL_LIMIT_S = 30

#: (status, headers, body) of an answer.
Answer = tuple[int, dict[str, str], bytes]


@dataclasses.dataclass(frozen=True)
class Request:
    """One request as the peer received it."""

    method: str
    path: str  # without the query
    query: str
    headers: dict[str, str]  # names in lower case
    body: bytes

    def form(self) -> list[tuple[str, str]]:
        """The form-encoded body's parameters, blanks kept, in order."""
        return parse_qsl(self.body.decode(), keep_blank_values=True, strict_parsing=False)

    def json(self) -> Any:
        """The JSON body."""
        return json.loads(self.body)


def json_answer(status: int, body: Any, headers: dict[str, str] | None = None) -> Answer:
    """A JSON answer."""
    data = json.dumps(body).encode()
    return status, {"Content-Type": "application/json", **(headers or {})}, data


class HttpPeer:
    """A local server; subclasses implement `answer`."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._failures: deque[tuple[int, float | None]] = deque()
        self._stalls: deque[threading.Event] = deque()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """http://127.0.0.1:<port>, once started."""
        assert self._server is not None, "start() the peer first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Any:
        """Listen on a free port of 127.0.0.1; returns the peer."""
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                peer._serve(self)

            def do_POST(self) -> None:
                peer._serve(self)

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Any:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail_next(self, count: int, status: int = 503, retry_after: float | None = 1) -> None:
        """Answer the next `count` requests with `status` (and Retry-After, if given)."""
        with self._lock:
            self._failures.extend([(status, retry_after)] * count)

    def stall_next(self, count: int = 1) -> threading.Event:
        """Hold the next `count` requests unanswered until the returned event is set (a
        provider that hangs, or a sender killed while waiting for the answer)."""
        release = threading.Event()
        with self._lock:
            self._stalls.extend([release] * count)
        return release

    def answer(self, request: Request) -> Answer:
        """The real service's answer to `request`."""
        raise NotImplementedError

    def failure(self, status: int, retry_after: float | None) -> Answer:
        """The service's answer when it is failing (subclasses give their error body)."""
        headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else {}
        return json_answer(status, {"error": "failing on purpose"}, headers)

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        parts = urlsplit(handler.path)
        request = Request(
            method=handler.command,
            path=parts.path,
            query=parts.query,
            headers={name.lower(): value for name, value in handler.headers.items()},
            body=handler.rfile.read(length) if length else b"",
        )
        with self._lock:
            self.requests.append(request)
            stall = self._stalls.popleft() if self._stalls else None
        if stall is not None:
            stall.wait(STALL_LIMIT_S)
        with self._lock:
            failing = self._failures.popleft() if self._failures else None
        status, headers, body = self.failure(*failing) if failing else self.answer(request)
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
