"""The stack keeps its services running and clears what an earlier run left behind."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import stat
import threading
import time

import httpx
import psutil

from c360.appliance.engines import EmbeddedPostgres, free_port
from c360.appliance.stack import Stack

WRITE_KEY = "test-write-key-1"  # the "web" key of the settings fixture (tests/conftest.py)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _wait_for(condition, limit_s: float = 30.0) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_a_service_process_that_dies_is_restarted(runtime):
    settings = dataclasses.replace(runtime.settings, port=free_port())
    stack = Stack(settings)
    stack.start()
    stop = threading.Event()
    supervisor = threading.Thread(target=stack.supervise, args=(stop,))
    try:
        worker = stack.children[0]
        os.kill(worker.pid, signal.SIGKILL)
        supervisor.start()

        restarted = _wait_for(lambda: stack.children[0].pid != worker.pid)
        assert restarted
        assert stack.children[0].poll() is None
        assert httpx.get(f"{stack.url}/health", timeout=5).status_code == 200
    finally:
        stop.set()
        if supervisor.is_alive():
            supervisor.join(10)
        stack.stop()


def test_a_service_left_by_an_earlier_run_is_stopped_before_a_new_one_starts(runtime):
    earlier = Stack(runtime.settings)
    leftover = earlier._launch(["worker", "--index", "0"], "worker-0")
    assert _wait_for(lambda: psutil.pid_exists(leftover.pid))

    later = Stack(runtime.settings)
    fresh = later._launch(["worker", "--index", "0"], "worker-0")
    try:
        assert leftover.poll() is not None or _wait_for(lambda: leftover.poll() is not None, 5)
        assert fresh.poll() is None
    finally:
        later.children.append(fresh)
        later.stop()


def _supervised(stack: Stack):
    stop = threading.Event()
    supervisor = threading.Thread(target=stack.supervise, args=(stop,))
    supervisor.start()
    return stop, supervisor


def _health(stack: Stack) -> bool:
    try:
        return httpx.get(f"{stack.url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_an_embedded_valkey_that_dies_is_restarted_on_the_same_socket(runtime, tmp_path):
    settings = dataclasses.replace(
        runtime.settings, data_dir=tmp_path / "own", valkey_url=None, port=free_port()
    )
    stack = Stack(settings)
    stack.start()
    url = stack.settings.valkey_url
    stop, supervisor = _supervised(stack)
    try:
        dead = stack.valkey.process
        dead.kill()

        assert _wait_for(lambda: stack.valkey.process is not dead and stack.valkey.alive)
        assert stack.settings.valkey_url == url
        assert _wait_for(lambda: _health(stack))
    finally:
        stop.set()
        supervisor.join(30)
        stack.stop()


def test_an_embedded_postgres_that_dies_is_restarted_on_its_remembered_port(runtime, tmp_path):
    settings = dataclasses.replace(
        runtime.settings, data_dir=tmp_path / "own", postgres_dsn=None, port=free_port()
    )
    stack = Stack(settings)
    stack.start()
    dsn = stack.settings.postgres_dsn
    stop, supervisor = _supervised(stack)
    try:
        dead = stack.postgres.process
        dead.kill()

        assert _wait_for(lambda: stack.postgres.process is not dead and stack.postgres.alive, 60)
        assert stack.postgres.dsn == dsn == stack.settings.postgres_dsn
        assert _wait_for(lambda: _health(stack))
    finally:
        stop.set()
        supervisor.join(30)
        stack.stop()


def test_a_remembered_postgres_port_that_is_taken_is_replaced_and_remembered(tmp_path):
    engine = EmbeddedPostgres(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        engine.port_file.parent.mkdir(parents=True)
        engine.port_file.write_text(str(busy))

        chosen = engine._choose_port()

    assert chosen != busy
    assert engine.port_file.read_text() == str(chosen)
    assert engine._choose_port() == chosen  # free again: kept


def test_what_the_stack_writes_is_private(runtime, tmp_path):
    settings = dataclasses.replace(runtime.settings, data_dir=tmp_path / "own", port=free_port())
    stack = Stack(settings)
    stack.start()
    try:
        event = {"type": "track", "event": "Viewed", "userId": "u-1", "messageId": "m-1"}
        sent = httpx.post(f"{stack.url}/v1/track", json=event, auth=(WRITE_KEY, ""), timeout=5)
        assert sent.status_code == 200, sent.text
        lake = settings.data_dir / "lake"
        assert _wait_for(lambda: any(lake.rglob("*.parquet")))
    finally:
        stack.stop()

    written = [p for p in settings.data_dir.rglob("*") if p.is_file() and p.name != "c360.lock"]
    assert {p.name for p in written} >= {"gateway.log", "worker-0.log", "gateway.pid"}
    assert any(p.suffix == ".parquet" for p in written)
    assert {str(p): oct(_mode(p)) for p in written if _mode(p) & 0o077} == {}
    assert _mode(settings.data_dir) == 0o700
    assert _mode(settings.data_dir / "c360.lock") == 0o600


def test_a_starting_stack_drops_profiles_cached_before_it_started(runtime):
    stale = {
        "profile_id": "00000000-0000-4000-8000-000000000001",
        "revenue": 1,
        "identifiers": [{"type": "user_id", "value": "ghost"}],
    }
    runtime.cache.put([stale])
    assert runtime.cache.lookup("user_id", "ghost") is not None

    stack = Stack(dataclasses.replace(runtime.settings, port=free_port()))
    stack.start()
    try:
        assert runtime.cache.lookup("user_id", "ghost") is None
        assert runtime.cache.get(stale["profile_id"]) is None
    finally:
        stack.stop()
