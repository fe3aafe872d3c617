"""`c360 trial` left serving: per-customer profiles through the F5 API, malformed events through
the gateway into the dead-letter topic, unknown write keys refused, and a SIGTERM that takes
every process of the stack down.

The tests share one serving trial; the SIGTERM test stops it and so comes last.
"""

from __future__ import annotations

import json
import random
import signal
import time
import unicodedata
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from .conftest import (
    EXIT_TIMEOUT_S,
    TRIAL_TIMEOUT_S,
    Launched,
    PlainNumbers,
    decode_summary,
    describe,
    plain_numbers,
    role_of,
    trial_command,
    valkey_socket,
    wait_until_gone,
)

pytestmark = pytest.mark.e2e

SLICE = 3000
SAMPLED_CUSTOMERS = 20

#: Longest an accepted event may take to show in its profile.
PROFILE_WAIT_S = 60

#: Segment's per-event limit; an event over it is refused.
MAX_EVENT_BYTES = 32 * 1024


@dataclass
class ServingTrial:
    """A trial that replayed the slice and keeps serving."""

    launched: Launched
    summary: dict[str, Any]
    data_dir: Path

    @property
    def api(self) -> str:
        return str(self.summary["api"])

    @property
    def write_key(self) -> str:
        return (self.data_dir / "secrets" / "trial-write-key").read_text().strip()

    def get_profile(self, reference: str) -> httpx.Response:
        return httpx.get(
            f"{self.api}/v1/profiles/{reference}",
            headers={"Authorization": f"Bearer {self.summary['api_token']}"},
            timeout=10,
        )

    def post_batch(self, events: list[dict[str, Any]] | bytes, **kwargs: Any) -> httpx.Response:
        body = events if isinstance(events, bytes) else json.dumps({"batch": events}).encode()
        headers = {"Content-Type": "application/json"}
        return httpx.post(
            f"{self.api}/v1/batch", content=body, headers=headers, timeout=10, **kwargs
        )

    def wait_for_profile(self, reference: str, orders: int | None = None) -> dict[str, Any]:
        """The profile once it exists (and has `orders` orders, when given)."""
        deadline = time.monotonic() + PROFILE_WAIT_S
        last: httpx.Response | None = None
        while time.monotonic() < deadline:
            last = self.get_profile(reference)
            if last.status_code == 200:
                doc = _decode(last)
                if orders is None or doc["order_count"] == orders:
                    return doc
            time.sleep(0.2)
        raise AssertionError(f"profile {reference!r} not current in time: {last and last.text}")

    def valkey(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(valkey_socket(self.data_dir)))


@pytest.fixture(scope="module")
def expected(cdnow_file: Path) -> PlainNumbers:
    return plain_numbers(cdnow_file, SLICE)


@pytest.fixture(scope="module")
def serving(
    launch: Any, cdnow_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> ServingTrial:
    data_dir = tmp_path_factory.mktemp("serving") / "data"
    launched = launch(trial_command(data_dir, cdnow_file, SLICE, serve=True), data_dir)
    summary = decode_summary(launched.read_line(TRIAL_TIMEOUT_S))
    return ServingTrial(launched, summary, data_dir)


def test_the_serving_trial_reports_its_api_and_the_plain_totals(
    serving: ServingTrial, expected: PlainNumbers
) -> None:
    summary = serving.summary

    assert summary["api"].startswith("http://127.0.0.1:")
    assert summary["api_token"]
    assert summary["events_accepted"] == SLICE
    assert summary["events_rejected"] == 0
    assert summary["profiles"] == expected.customers
    assert Decimal(summary["revenue_total"]) == expected.revenue


def test_each_sampled_customer_profile_matches_the_plain_sums(
    serving: ServingTrial, expected: PlainNumbers
) -> None:
    customers = random.Random(360).sample(sorted(expected.orders_by_customer), SAMPLED_CUSTOMERS)

    for customer in customers:
        response = serving.get_profile(f"cdnow-{customer}")
        assert response.status_code == 200, response.text
        doc = _decode(response)
        assert doc["order_count"] == expected.orders_by_customer[customer], customer
        assert Decimal(doc["revenue"]) == expected.revenue_by_customer[customer], customer
        assert {"type": "user_id", "value": f"cdnow-{customer}"}.items() <= _user_id(doc).items()


def test_the_api_refuses_a_missing_or_wrong_token(serving: ServingTrial) -> None:
    url = f"{serving.api}/v1/profiles/cdnow-00001"

    anonymous = httpx.get(url, timeout=10)
    wrong = httpx.get(url, headers={"Authorization": "Bearer not-a-token"}, timeout=10)

    assert anonymous.status_code == 401
    assert wrong.status_code == 401
    assert wrong.json()["code"] == "invalid_token"
    assert "cdnow" not in wrong.text


def test_a_batch_with_malformed_events_keeps_the_good_ones_and_dead_letters_the_bad_ones(
    serving: ServingTrial,
) -> None:
    run = uuid.uuid4().hex[:8]
    buyer, person = f"e2e-{run}-buyer", f"e2e-{run}-person"
    good = [
        _order(f"{run}-g1", buyer, 12.5),
        _order(f"{run}-g2", buyer, "7.25"),  # a strictly numeric string counts as money
        {
            "type": "identify",
            "userId": person,
            "messageId": f"{run}-g3",
            # a lone surrogate is replaced, not refused; decomposed text is stored as NFC
            "traits": {"name": "Nguy\ud800n", "city": unicodedata.normalize("NFD", "Hà Nội")},
        },
    ]
    bad = {
        f"{run}-b1": ("missing_identity", _order(f"{run}-b1", None, 1)),
        f"{run}-b2": ("missing_identity", _order(f"{run}-b2", "undefined", 1)),
        f"{run}-b3": ("invalid_userId", {**_order(f"{run}-b3", None, 1), "userId": {"id": 7}}),
        f"{run}-b4": ("event_too_large", _order(f"{run}-b4", f"e2e-{run}-big", 1, pad=33_000)),
    }
    events = [
        good[0],
        bad[f"{run}-b1"][1],
        good[1],
        bad[f"{run}-b2"][1],
        good[2],
        bad[f"{run}-b3"][1],
        bad[f"{run}-b4"][1],
    ]
    assert len(json.dumps(bad[f"{run}-b4"][1]).encode()) > MAX_EVENT_BYTES

    response = serving.post_batch(_with_lone_surrogate(events), auth=(serving.write_key, ""))

    assert response.status_code == 200, response.text
    reply = response.json()
    assert (reply["accepted"], reply["rejected"]) == (len(good), len(bad))
    assert {e["messageId"]: e["code"] for e in reply["errors"]} == {
        mid: code for mid, (code, _event) in bad.items()
    }
    assert all(e["message"] for e in reply["errors"])

    orders = serving.wait_for_profile(buyer, orders=2)
    assert Decimal(orders["revenue"]) == Decimal("19.75")
    traits = serving.wait_for_profile(person)["traits"]
    assert traits["name"] == "Nguy\ufffdn"
    assert traits["city"] == unicodedata.normalize("NFC", "Hà Nội")
    assert serving.get_profile(f"e2e-{run}-big").status_code == 404

    dead = _dead_letters(serving, run)
    assert set(dead) == set(bad)
    for message_id, (code, event) in bad.items():
        rejection = dead[message_id]
        assert rejection["code"] == code
        assert rejection["reason"]
        assert rejection["source"] == "cdnow-trial"
        assert json.loads(rejection["payload"]) == event


def test_an_unknown_write_key_gets_401_and_lands_nowhere(serving: ServingTrial) -> None:
    run = uuid.uuid4().hex[:8]
    stranger = f"e2e-{run}-stranger"

    by_header = serving.post_batch([_order(f"{run}-u1", stranger, 5)], auth=("no-such-key", ""))
    in_body = {"writeKey": "no-such-key", "batch": [_order(f"{run}-u2", stranger, 5)]}
    by_body = serving.post_batch(json.dumps(in_body).encode())
    without_key = serving.post_batch([_order(f"{run}-u3", stranger, 5)])
    barrier = serving.post_batch(
        [_order(f"{run}-ok", f"e2e-{run}-ok", 1)], auth=(serving.write_key, "")
    )

    for response in (by_header, by_body, without_key):
        assert response.status_code == 401, response.text
        assert response.json()["code"] in ("unknown_write_key", "missing_write_key")
        assert response.json()["message"]
    assert by_header.json()["code"] == by_body.json()["code"] == "unknown_write_key"
    assert barrier.status_code == 200, barrier.text
    serving.wait_for_profile(f"e2e-{run}-ok", orders=1)
    assert serving.get_profile(stranger).status_code == 404
    assert _stream_entries_mentioning(serving, stranger) == []


def test_sigterm_stops_the_serving_trial_and_every_process_it_started(
    serving: ServingTrial,
) -> None:
    process = serving.launched.process
    assert process.poll() is None, "the serving trial exited on its own"
    children = serving.launched.capture_children()
    roles = {role_of(child) for child in children}
    assert {"gateway", "worker", "postgres", "valkey"} <= roles, describe(children)

    process.send_signal(signal.SIGTERM)
    code = process.wait(TRIAL_TIMEOUT_S)

    assert code == 0
    left = wait_until_gone(children, EXIT_TIMEOUT_S)
    assert left == [], describe(left)


def _order(message_id: str, user_id: Any, revenue: Any, pad: int = 0) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "track",
        "event": "Order Completed",
        "messageId": message_id,
        "timestamp": "2026-01-02T03:04:05Z",
        "properties": {"revenue": revenue, "currency": "USD"},
    }
    if user_id is not None:
        event["userId"] = user_id
    if pad:
        event["properties"]["note"] = "x" * pad
    return event


def _with_lone_surrogate(events: list[dict[str, Any]]) -> bytes:
    """The batch as JSON bytes; json.dumps writes the lone surrogate as a `\\ud800` escape."""
    body = json.dumps({"batch": events}).encode()
    assert b"\\ud800" in body
    return body


def _decode(response: httpx.Response) -> dict[str, Any]:
    return json.loads(response.content, parse_float=Decimal)


def _user_id(doc: dict[str, Any]) -> dict[str, Any]:
    found = [ident for ident in doc["identifiers"] if ident["type"] == "user_id"]
    assert len(found) == 1, doc["identifiers"]
    return found[0]


def _dead_letters(serving: ServingTrial, marker: str) -> dict[str, dict[str, Any]]:
    """Rejections on the c360-dlq streams whose messageId carries `marker`, by messageId."""
    found: dict[str, dict[str, Any]] = {}
    client = serving.valkey()
    try:
        for stream in client.scan_iter(match="c360-dlq:*", _type="stream"):
            for _entry_id, fields in client.xrange(stream):
                for line in fields[b"d"].split(b"\n"):
                    rejection = json.loads(line)
                    if marker in (rejection.get("messageId") or ""):
                        assert rejection["messageId"] not in found, "dead-lettered twice"
                        found[rejection["messageId"]] = rejection
    finally:
        client.close()
    return found


def _stream_entries_mentioning(serving: ServingTrial, marker: str) -> list[tuple[bytes, bytes]]:
    """(stream, entry id) of every entry on every stream that contains `marker`."""
    needle = marker.encode()
    found = []
    client = serving.valkey()
    try:
        for stream in client.scan_iter(match="*", _type="stream"):
            for entry_id, fields in client.xrange(stream):
                if any(needle in value for value in fields.values()):
                    found.append((stream, entry_id))
    finally:
        client.close()
    return found
