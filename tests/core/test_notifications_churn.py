"""Churn rules fire for customers who go quiet (c360.notifications.churn): purchase histories
go through F1-F3, the scorer fits BG/NBD and plans a send for each customer whose risk
(1 - P(alive)) reached the rule's threshold. The expected customers are computed here from
the histories themselves: frequency, recency and age counted from the purchase days, P(alive)
from the paper's closed form, with the parameters clv.fit_bgnbd finds on those numbers (the
fit itself is checked against the paper in test_clv.py). A customer is told once per
crossing; a profile update in between does not make them cross again."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest
from notify_support import Clock, email_settings, feed, identify, order, rule, sends, template
from peers.smtp_peer import SmtpPeer

from c360.analytics import clv
from c360.notifications import churn
from c360.runtime import Runtime

THRESHOLD = 0.5
FIRST_DAY = date(2025, 1, 6)


@pytest.fixture
def rt(runtime: Runtime):
    with SmtpPeer() as smtp:
        engaged = Runtime(email_settings(runtime.settings, smtp.port))
        template(engaged, "miss-you", subject="We miss you", body="Come back!")
        conditions = {"threshold": THRESHOLD}
        rule(
            engaged,
            "churn",
            trigger="churn_risk_crossed",
            template="miss-you",
            conditions=conditions,
        )
        yield engaged
        engaged.close()


def _histories(seed: int = 7, customers: int = 80) -> dict[str, list[date]]:
    """Purchase days per customer: some buy steadily to the end, some stop early."""
    rng = random.Random(seed)
    histories = {}
    for n in range(customers):
        first = FIRST_DAY + timedelta(days=rng.randrange(0, 120))
        gap = rng.randrange(7, 45)
        stops = first + timedelta(days=rng.choice([30, 60, 120, 400]))
        days = [first]
        while rng.random() < 0.8 and days[-1] + timedelta(days=gap) <= min(
            stops, date(2025, 12, 31)
        ):
            days.append(days[-1] + timedelta(days=gap))
        histories[f"c{n}"] = days
    return histories


def _feed(rt: Runtime, clock: Clock, histories: dict[str, list[date]]) -> None:
    events = []
    for user, days in histories.items():
        at = datetime.combine(days[0], datetime.min.time(), tzinfo=UTC) + timedelta(hours=9)
        events.append(identify(user, at, {"marketing": True}, email=f"{user}@example.com"))
        for day in days:
            moment = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=10)
            events.append(order(user, "20", moment))
    feed(rt, clock, *events)


def _at_risk(histories: dict[str, list[date]], as_of: date) -> set[str]:
    """Customers whose 1 - P(alive) reaches the threshold on `as_of`, computed from the days."""
    users = sorted(histories)
    x = [len(set(histories[u])) - 1 for u in users]
    t_x = [(max(histories[u]) - min(histories[u])).days / 7 for u in users]
    big_t = [(as_of - min(histories[u])).days / 7 for u in users]
    model = clv.fit_bgnbd(x, t_x, big_t)
    r, alpha, a, b = model.r, model.alpha, model.a, model.b
    risky = set()
    for user, xi, ti, bi in zip(users, x, t_x, big_t, strict=True):
        if xi == 0:
            continue  # no drop-out estimate without a repeat purchase
        odds = a / (b + xi - 1) * ((alpha + bi) / (alpha + ti)) ** (r + xi)
        if 1 - 1 / (1 + odds) >= THRESHOLD:
            risky.add(user)
    return risky


def _told(rt: Runtime) -> list[str]:
    with rt.pool.connection() as conn:
        ids = {
            str(pid): user
            for pid, user in conn.execute(
                "SELECT profile_id, id_value FROM identifiers WHERE id_type = 'user_id'"
            )
        }
    return sorted(ids[str(s["profile_id"])] for s in sends(rt))


def test_customers_who_went_quiet_are_told_once_per_crossing(rt: Runtime):
    histories = _histories()
    clock = Clock(datetime(2026, 1, 2, 8, 0, tzinfo=UTC))
    _feed(rt, clock, histories)
    expected = _at_risk(histories, date(2026, 3, 1))
    assert 5 <= len(expected) <= len(histories) - 5  # a mix: the threshold separates them

    planned = churn.score_and_plan(rt, datetime(2026, 3, 1, 6, 0, tzinfo=UTC))

    assert planned == len(expected)
    assert _told(rt) == sorted(expected)
    facts = sends(rt)[0]["facts"]
    assert facts["trigger"] == "churn_risk_crossed" and facts["threshold"] == THRESHOLD
    assert THRESHOLD <= facts["value"] <= 1

    # the next day: still at risk, not told again; a page view in between changes nothing
    quiet = sorted(expected)[0]
    page = {"type": "page", "userId": quiet, "messageId": "pv-1", "name": "Home"}
    clock.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    page["timestamp"] = "2026-03-01T12:00:00Z"
    feed(rt, clock, page)
    assert churn.score_and_plan(rt, datetime(2026, 3, 2, 6, 0, tzinfo=UTC)) == 0
    assert _told(rt) == sorted(expected)

    # she buys again (no longer at risk), then goes quiet for a year: told a second time
    comeback = clock.now = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)
    feed(rt, clock, order(quiet, "35", comeback))
    histories[quiet] = [*histories[quiet], comeback.date()]
    assert quiet not in _at_risk(histories, date(2026, 3, 4))
    churn.score_and_plan(rt, datetime(2026, 3, 4, 6, 0, tzinfo=UTC))
    assert quiet in _at_risk(histories, date(2027, 3, 4))
    churn.score_and_plan(rt, datetime(2027, 3, 4, 6, 0, tzinfo=UTC))

    assert _told(rt).count(quiet) == 2


def test_without_repeat_purchases_nothing_is_scored_or_sent(rt: Runtime):
    clock = Clock(datetime(2026, 1, 2, 8, 0, tzinfo=UTC))
    _feed(rt, clock, {f"once{n}": [FIRST_DAY + timedelta(days=n)] for n in range(10)})

    assert churn.churn_risks(rt, datetime(2026, 3, 1, tzinfo=UTC)) == {}
    assert churn.score_and_plan(rt, datetime(2026, 3, 1, tzinfo=UTC)) == 0
    assert sends(rt) == []


def test_one_worker_scores_at_a_time(rt: Runtime):
    with rt.pool.connection() as holder:
        holder.execute("SELECT pg_advisory_lock(hashtext('c360:notify:churn'))")
        try:
            assert churn.score_and_plan(rt, datetime(2026, 3, 1, tzinfo=UTC)) is None
        finally:
            holder.execute("SELECT pg_advisory_unlock(hashtext('c360:notify:churn'))")
    assert churn.score_and_plan(rt, datetime(2026, 3, 1, tzinfo=UTC)) == 0
