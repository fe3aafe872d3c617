"""The stack keeps its services running and clears what an earlier run left behind."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time

import httpx
import psutil

from c360.appliance.engines import free_port
from c360.appliance.stack import Stack


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
