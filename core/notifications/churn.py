"""Churn risk for the `churn_risk_crossed` rules that read the default field
(`attributes.churn_risk`): a customer who goes quiet sends no events, so no profile update
would ever tell a rule that their risk rose. A worker job scores every customer instead,
every `notify_churn_hours`:

    risk = 1 - P(alive | x, t_x, T)

under BG/NBD fitted on every customer's purchases up to today (c360.analytics.clv, the model
/analytics/ltv shows), and hands each rule the customers' risks as their documents' churn
risk. The rules' watch (notify.watch) sends once per crossing: a customer still at risk the
next day is not told again; one who bought, fell below the threshold and crossed it later
is. Customers with one purchase have no drop-out estimate (BG/NBD lets customers drop out
only after a repeat purchase) and are never at risk here.

A profile update does not reset what this job saw (a document without the field leaves the
watch alone, c360.notifications.rules). Rules reading another field are left to whatever
writes that field. One worker scores at a time (an advisory lock); the others skip the pass.
Reads events and profiles, writes notify.watch and notify.sends through c360.notifications.rules.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import psycopg

from c360.analytics import clv, ltv
from c360.notifications import rules
from c360.periodic import PeriodicTask
from c360.runtime import Runtime

log = logging.getLogger(__name__)

#: The advisory lock one scoring pass holds, so that workers do not repeat each other.
_LOCK = "c360:notify:churn"


def churn_risks(runtime: Runtime, now: datetime) -> dict[str, float]:
    """Every customer's churn risk today (1 - P(alive)), by live profile id; empty, with the
    reason logged, when the purchases cannot support a fit yet (nobody bought twice...)."""
    summary = ltv.rfm_summary(runtime, now.astimezone(UTC).date())
    if not len(summary):
        return {}
    try:
        model = clv.fit_bgnbd(summary.frequency, summary.recency, summary.T)
    except clv.ModelInputError as exc:
        log.info("Churn risk not scored: %s.", exc.message)
        return {}
    alive = clv.probability_alive(model, summary.frequency, summary.recency, summary.T)
    return {pid: float(1.0 - p) for pid, p in zip(summary.profile_ids, alive, strict=True)}


def score_and_plan(runtime: Runtime, now: datetime) -> int | None:
    """Score every customer and plan what the churn rules reading the default field trigger;
    the sends planned, or None when another worker is scoring."""
    with runtime.pool.connection() as conn:
        watching = [
            rule
            for rule in rules.live_rules(conn)
            if rule.trigger == "churn_risk_crossed"
            and rule.conditions.get("field", rules.DEFAULT_RISK_FIELD) == rules.DEFAULT_RISK_FIELD
        ]
        if not watching:
            return 0
        if not _try_lock(conn):
            return None
        try:
            risks = churn_risks(runtime, now)
            stamp = now.astimezone(UTC).isoformat()
            documents = (
                {"profile_id": pid, "updated_at": stamp, "attributes": {"churn_risk": risk}}
                for pid, risk in risks.items()
            )
            planned = rules.plan(conn, watching, documents, now)
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (_LOCK,))
    log.info("Scored the churn risk of %d customers; %d sends planned.", len(risks), planned)
    return planned


def _try_lock(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (_LOCK,)).fetchone()
    return bool(row and row[0])


class ChurnScorer(PeriodicTask):
    """The worker's job: `score_and_plan` at start and every `notify_churn_hours` (0: never)."""

    def __init__(self, runtime: Runtime, hours: float | None = None) -> None:
        hours = runtime.settings.notify_churn_hours if hours is None else hours
        super().__init__("c360-churn-scorer", hours * 3600)
        self.runtime = runtime

    def tick(self) -> int | None:
        """One scoring pass (see score_and_plan), as of now."""
        return score_and_plan(self.runtime, datetime.now(UTC))
