"""A `c360 trial` killed with SIGKILL in the middle of its replay takes every process it started
down with it, and a second trial on the same data folder ends with exactly the right numbers:
nothing lost, nothing counted twice. A trial that loses its gateway or worker says so and stops
instead of waiting for events that can never arrive."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis

from .conftest import (
    EXIT_TIMEOUT_S,
    describe,
    plain_numbers,
    role_of,
    run_trial,
    trial_command,
    valkey_socket,
    wait_until_gone,
)

pytestmark = pytest.mark.e2e

SLICE = 20_000

#: Longest to wait for the replay to begin before the test gives up.
START_TIMEOUT_S = 120

#: How often the gateway's accepted count is read while waiting for the moment to kill.
POLL_S = 0.01

#: Kill once this many events are in: half the slice, so that every stage (F2, F3, lake sink)
#: has work in flight while the other half of the replay is still to come.
KILL_AT = SLICE // 2


def test_a_trial_killed_mid_replay_leaves_no_process_and_a_rerun_gets_every_number_right(
    launch: Any, cdnow_file: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    expected = plain_numbers(cdnow_file, SLICE)
    launched = launch(trial_command(data_dir, cdnow_file, SLICE, serve=False), data_dir)

    accepted = _wait_until_replay_under_way(launched.process, data_dir)
    children = launched.capture_children()
    roles = {role_of(child) for child in children}
    launched.process.kill()
    launched.process.wait(EXIT_TIMEOUT_S)

    assert KILL_AT <= accepted < SLICE, f"killed after {accepted} events: not mid-replay"
    assert {"gateway", "worker", "postgres", "valkey"} <= roles, describe(children)
    left = wait_until_gone(children, EXIT_TIMEOUT_S)
    assert left == [], f"still running after the trial was killed: {describe(left)}"

    summary = run_trial(data_dir, cdnow_file, SLICE)

    assert summary["events_accepted"] == SLICE
    assert summary["events_rejected"] == 0
    assert summary["client_failures"] == 0
    assert summary["events_stored"] == SLICE
    assert summary["events_in_lake"] == SLICE
    assert summary["orders_total"] == SLICE
    assert summary["profiles"] == expected.customers
    assert Decimal(summary["revenue_total"]) == expected.revenue


def _wait_until_replay_under_way(process: Any, data_dir: Path) -> int:
    """Wait until the gateway has accepted half the slice's events; returns the count read
    (the gateway's per-source tally in Valkey)."""
    socket = valkey_socket(data_dir)
    deadline = time.monotonic() + START_TIMEOUT_S
    client: redis.Redis | None = None
    try:
        while time.monotonic() < deadline:
            assert process.poll() is None, "the trial ended before the test could kill it"
            if client is None and socket.exists():
                client = redis.Redis(unix_socket_path=str(socket), socket_timeout=5)
            accepted = _accepted(client) if client is not None else 0
            if accepted >= KILL_AT:
                return accepted
            time.sleep(POLL_S)
    finally:
        if client is not None:
            client.close()
    raise AssertionError(f"the replay did not start within {START_TIMEOUT_S} s")


def _accepted(client: redis.Redis) -> int:
    try:
        keys = list(client.scan_iter(match="c360:count:accepted:*"))
        return sum(int(value or 0) for value in client.mget(keys)) if keys else 0
    except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
        return 0  # Valkey is still starting


#: Well inside the trial's 600 s catch-up timeout: a trial that lost a process must say so
#: rather than wait for events that can never arrive.
FAIL_FAST_BOUND_S = 120


@pytest.mark.parametrize("role", ["gateway", "worker"])
def test_a_trial_whose_gateway_or_worker_dies_fails_with_a_message_and_stops_the_rest(
    launch: Any, cdnow_file: Path, tmp_path: Path, role: str
) -> None:
    data_dir = tmp_path / "data"
    launched = launch(trial_command(data_dir, cdnow_file, SLICE, serve=False), data_dir)
    _wait_until_replay_under_way(launched.process, data_dir)
    children = launched.capture_children()
    victim = next(child for child in children if role_of(child) == role)

    victim.kill()
    code = launched.process.wait(FAIL_FAST_BOUND_S)

    assert code == 1
    message = launched.stderr_path.read_text()
    assert f"c360 {role} process" in message
    assert str(data_dir / "logs") in message
    left = wait_until_gone(children, EXIT_TIMEOUT_S)
    assert left == [], f"still running after the trial failed: {describe(left)}"
