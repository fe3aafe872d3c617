"""Keeps saved segments with a moving window (`within_days`) current as time passes: their
members change even when no profile does, so the segments stage alone cannot see it.

A daemon thread in each worker process recomputes every saved segment once an hour; the work
is idempotent, so two workers doing it at once only repeat each other.
"""

from __future__ import annotations

import logging

import psycopg

from c360.periodic import PeriodicTask
from c360.runtime import Runtime
from c360.segments import membership

log = logging.getLogger(__name__)

#: How often saved segments are recomputed in full.
INTERVAL_S = 3600.0


class SegmentRefresher(PeriodicTask):
    """Recompute every saved segment every `interval_s` seconds (the first after one
    interval: the segments stage keeps them current meanwhile) until `stop()`."""

    def __init__(self, runtime: Runtime, interval_s: float = INTERVAL_S) -> None:
        super().__init__("segment-refresher", interval_s, run_at_start=False)
        self._runtime = runtime

    def tick(self) -> dict[int, int]:
        """One full recomputation; a failure is logged and tried again next time."""
        try:
            with self._runtime.pool.connection() as conn:
                return membership.recompute_all(conn, self._runtime.settings.default_region)
        except (psycopg.Error, OSError) as exc:
            log.warning("Could not recompute saved segments: %s; trying again later.", exc)
            return {}
