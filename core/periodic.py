"""The loop behind every worker's background job (scheduled reports, F0 syncs, segment
refreshes, due notifications, the outbox): a daemon thread that runs one pass every
`interval_s` seconds until `stop()`.

    class Refresher(PeriodicTask):
        def tick(self) -> None: ...          # one pass; may raise

    job = Refresher("segment-refresher", interval_s=3600, run_at_start=False)
    job.start(); ...; job.stop(timeout=5)

A pass that raises is logged with its traceback and the loop goes on: one bad row or a store
outage must never end a job for the rest of the process's life. A subclass catches the
failures it expects inside `tick` to log them more quietly. Touches nothing itself.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class PeriodicTask(threading.Thread):
    """Calls `tick()` every `interval_s` seconds (none when it is 0 or less) until `stop()`;
    the first pass comes at start when `run_at_start`, else after one interval."""

    def __init__(self, name: str, interval_s: float, *, run_at_start: bool = True) -> None:
        super().__init__(name=name, daemon=True)
        self.interval_s = interval_s
        self.run_at_start = run_at_start
        self._stopped = threading.Event()

    def tick(self) -> object:
        """One pass of the job."""
        raise NotImplementedError

    def run(self) -> None:
        """Pass after pass, a failing one logged, until stopped."""
        if self.interval_s <= 0:
            return
        if not self.run_at_start and self._stopped.wait(self.interval_s):
            return
        while not self._stopped.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("A pass of %s failed; the next comes as planned.", self.name)
            self._stopped.wait(self.interval_s)

    def stop(self, timeout: float | None = None) -> None:
        """Ask the loop to end after the pass in progress; wait up to `timeout` seconds for it
        (None: as long as it takes)."""
        self._stopped.set()
        if self.is_alive():
            self.join(timeout)
