"""Exactly one notification per triggering update across a worker SIGKILL: the real worker
process (c360 worker, as the appliance starts it) plans first-purchase emails for N customers
and sends them to a local SMTP server; it is killed while an email waits for the server's
answer, restarted, and the server ends with exactly one email per customer.

The kill lands once every email the server accepted is recorded as sent. Between a server's
250 and that record there is a window no SMTP client can close (the protocol cannot ask
whether a message arrived): a kill inside it sends that email again after its lease, with the
same Message-ID, which receivers dedupe on (tests/core/test_channel_email.py shows it)."""

from __future__ import annotations

import collections
import dataclasses
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from peers.smtp_peer import SmtpPeer

from c360.adapters.bus import RAW_EVENTS
from c360.events.f1 import IngestContext, ParsedRequest, ingest
from c360.events.model import encode
from c360.notifications import service
from c360.settings import to_environment

pytestmark = pytest.mark.e2e

CUSTOMERS = 30
#: Emails accepted before the server starts holding one: the kill lands mid-way.
SENT_BEFORE_KILL = 12
#: A row killed mid-send is retried once its lease (c360.channels.delivery.LEASE, 2 minutes)
#: runs out; Dramatiq re-queues a dead worker's stage messages after 15 s.
FINISH_TIMEOUT_S = 240
START_TIMEOUT_S = 120


def test_a_worker_killed_mid_send_still_sends_one_email_per_first_purchase(runtime, tmp_path: Path):
    with SmtpPeer() as smtp:
        settings = dataclasses.replace(
            runtime.settings,
            smtp_host="127.0.0.1",
            smtp_port=smtp.port,
            smtp_starttls=False,
            quiet_hours="",
            engage_secret="e2e-secret",
            public_url="https://c360.example.com",
            worker_processes=1,
        )
        _rule_and_template(runtime)
        smtp.hold_after(SENT_BEFORE_KILL)
        worker = _start_worker(settings, tmp_path, "first")
        try:
            _publish_first_purchases(runtime, CUSTOMERS)
            assert smtp.holding.wait(START_TIMEOUT_S), _log(tmp_path, "first")
            # the accepted emails' outcomes are written (each right after the server's 250);
            # the held ones have none yet
            _wait_for(lambda: _sent(runtime) == SENT_BEFORE_KILL, START_TIMEOUT_S, tmp_path)
            worker.send_signal(signal.SIGKILL)
            worker.wait(30)
        finally:
            _stop(worker)

        received_before = len(smtp.messages)
        assert received_before == SENT_BEFORE_KILL  # killed mid-way, one email on the wire
        # let the peer's event loop see the killed worker's connections close before the held
        # messages are answered (a held message whose client is gone is not kept)
        time.sleep(1)
        smtp.release()
        worker = _start_worker(settings, tmp_path, "second")
        try:
            _wait_for(lambda: len(smtp.messages) >= CUSTOMERS, FINISH_TIMEOUT_S, tmp_path, "second")
            time.sleep(3)  # a duplicate would come within the scheduler's next passes
        finally:
            _stop(worker)

    recipients = collections.Counter(str(m["To"]) for m in smtp.messages)
    expected = {f"c{n}@example.com": 1 for n in range(CUSTOMERS)}
    assert dict(recipients) == expected
    with runtime.pool.connection() as conn:
        states = conn.execute("SELECT state, count(*) FROM notify.sends GROUP BY 1").fetchall()
        statuses = conn.execute(
            "SELECT status, count(*) FROM channels.deliveries GROUP BY 1"
        ).fetchall()
    assert dict(states) == {"enqueued": CUSTOMERS}
    assert dict(statuses) == {"sent": CUSTOMERS}


def _rule_and_template(runtime) -> None:
    with runtime.pool.connection() as conn:
        service.save_template(
            conn,
            "user:e2e",
            {"name": "welcome", "channel": "email", "subject": "Thanks", "body": "Thank you!"},
        )
        service.create_rule(
            conn,
            "user:e2e",
            {
                "name": "first",
                "trigger": "first_purchase",
                "template": "welcome",
                "channel": "email",
                "purpose": "marketing",
            },
        )


def _publish_first_purchases(runtime, count: int) -> None:
    """Each customer identifies (email, consent to marketing) and orders once, published on
    c360-raw-events as the gateway publishes what it accepts."""
    now = datetime.now(UTC)
    stamp = now.isoformat().replace("+00:00", "Z")
    events = []
    for n in range(count):
        events.append(
            {
                "type": "identify",
                "userId": f"c{n}",
                "messageId": f"id-{n}",
                "timestamp": stamp,
                "traits": {"email": f"c{n}@example.com"},
                "context": {"consent": {"categoryPreferences": {"marketing": True}}},
            }
        )
        events.append(
            {
                "type": "track",
                "event": "Order Completed",
                "userId": f"c{n}",
                "messageId": f"order-{n}",
                "timestamp": stamp,
                "properties": {"revenue": 10 + n},
            }
        )
    ctx = IngestContext(source="web", received_at=now)
    result = ingest(
        ParsedRequest(events=[encode(e) for e in events]), ctx, runtime.settings, runtime.hooks
    )
    assert not result.rejected
    runtime.bus.publish(RAW_EVENTS, [(e.customer_key, encode(e)) for e in result.accepted])


def _start_worker(settings, tmp_path: Path, name: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("C360_")}
    env.update(to_environment(settings))
    log = (tmp_path / f"worker-{name}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "c360.appliance.cli", "worker", "--index", "0"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)


def _sent(runtime) -> int:
    with runtime.pool.connection() as conn:
        row = conn.execute("SELECT count(*) FROM channels.deliveries WHERE status = 'sent'")
        return int(row.fetchone()[0])


def _wait_for(done, timeout: float, tmp_path: Path, worker: str = "first") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return
        time.sleep(0.2)
    raise AssertionError(f"not done within {timeout} s: {_log(tmp_path, worker)}")


def _log(tmp_path: Path, name: str) -> str:
    path = tmp_path / f"worker-{name}.log"
    return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"
