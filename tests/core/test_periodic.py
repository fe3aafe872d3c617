"""The loop every worker job runs on (c360.periodic): passes at its interval, a failing pass
logged without ending the loop, a first pass at start or after one interval, none at all at
interval 0, and stop() waiting for the pass in progress."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from c360.periodic import PeriodicTask


class Counting(PeriodicTask):
    """Counts its passes; the first `failures` raise; each pass lasts `pass_s`."""

    def __init__(self, interval_s: float, *, failures: int = 0, pass_s: float = 0, **kw) -> None:
        super().__init__("counting", interval_s, **kw)
        self.passes = 0
        self.failures = failures
        self.pass_s = pass_s
        self.started = threading.Event()

    def tick(self) -> None:
        self.started.set()
        time.sleep(self.pass_s)
        self.passes += 1
        if self.passes <= self.failures:
            raise RuntimeError(f"pass {self.passes} broke")


def _wait_until(condition, limit_s: float = 10) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.01)


def test_a_failing_pass_is_logged_and_the_loop_goes_on(caplog: pytest.LogCaptureFixture):
    job = Counting(0.01, failures=2)
    with caplog.at_level(logging.ERROR, logger="c360.periodic"):
        job.start()
        try:
            _wait_until(lambda: job.passes >= 4)
        finally:
            job.stop(timeout=5)

    assert not job.is_alive()
    broke = [r for r in caplog.records if "A pass of counting failed" in r.getMessage()]
    assert len(broke) == 2
    assert [str(r.exc_info[1]) for r in broke] == ["pass 1 broke", "pass 2 broke"]


def test_the_first_pass_comes_at_start_or_after_one_interval():
    at_start = Counting(3600)
    later = Counting(3600, run_at_start=False)
    for job in (at_start, later):
        job.start()
    _wait_until(lambda: at_start.passes == 1)
    for job in (at_start, later):
        job.stop(timeout=5)

    assert (at_start.passes, later.passes) == (1, 0)
    assert not at_start.is_alive() and not later.is_alive()


def test_an_interval_of_zero_runs_nothing():
    job = Counting(0)
    job.start()
    job.join(timeout=5)

    assert not job.is_alive() and job.passes == 0


def test_stop_waits_for_the_pass_in_progress():
    job = Counting(3600, pass_s=0.3)
    job.start()
    assert job.started.wait(5)

    job.stop()

    assert not job.is_alive() and job.passes == 1
