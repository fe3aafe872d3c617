"""A local SMTP server (aiosmtpd) on 127.0.0.1 that keeps every message it accepts, parsed,
and can refuse the next messages with a temporary 451 (a server that is busy) to test retries.

    peer = SmtpPeer().start()        # peer.port; plain SMTP (no STARTTLS)
    peer.fail_next(2)                # the next two messages: 451 at DATA
    peer.hold_after(5)               # the 6th message waits for its 250 until release();
                                     # a client gone meanwhile leaves nothing (peer.holding)
    peer.messages                    # every accepted message (email.message.EmailMessage)
    peer.stop()                      # or use the peer as a context manager
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import threading
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


class SmtpPeer:
    """Accepts mail like any SMTP server and records it; `fail_next` answers 451 instead."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.refused = 0
        self._failures = 0
        self._hold_after: int | None = None
        self._released = threading.Event()
        #: set while a message waits for its 250 (see hold_after)
        self.holding = threading.Event()
        self._lock = threading.Lock()
        self._controller: Controller | None = None
        self.port = _free_port()

    def start(self) -> SmtpPeer:
        """Listen on 127.0.0.1:self.port."""
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        """Stop listening."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def fail_next(self, count: int) -> None:
        """Answer the next `count` messages with 451 (try again later) at DATA."""
        with self._lock:
            self._failures = count

    def hold_after(self, count: int) -> None:
        """Keep the client of every message after the first `count` waiting for the server's
        answer to DATA until `release()`. A real server keeps a message only once it has said
        250; a client that disconnects before (a killed worker) leaves nothing behind."""
        with self._lock:
            self._hold_after = count
            self._released.clear()

    def release(self) -> None:
        """Answer held messages and hold no more."""
        with self._lock:
            self._hold_after = None
        self._released.set()

    def to(self, address: str) -> list[EmailMessage]:
        """Messages accepted for one recipient."""
        with self._lock:
            return [
                m
                for m, (_, rcpts) in zip(self.messages, self.envelopes, strict=True)
                if address in rcpts
            ]

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """aiosmtpd's hook: keep the message, or refuse it while failures are asked for.
        aiosmtpd cancels this coroutine when the client goes away, so a held message whose
        client died is never kept."""
        held = False
        while self._held():
            held = True
            self.holding.set()
            await asyncio.sleep(0.02)
        if held and (server.transport is None or server.transport.is_closing()):
            # the client went away while waiting (a killed worker) and aiosmtpd had not yet
            # cancelled this hook: it never saw a 250, so the message is not kept
            return "421 4.4.2 Client gone"
        with self._lock:
            if self._failures > 0:
                self._failures -= 1
                self.refused += 1
                return "451 4.3.0 Try again later"
            parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
            self.messages.append(parsed)  # type: ignore[arg-type]
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"

    def _held(self) -> bool:
        with self._lock:
            return self._hold_after is not None and len(self.messages) >= self._hold_after

    def __enter__(self) -> SmtpPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
