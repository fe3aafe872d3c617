"""F4 policy, end to end through the real pipeline, outbox and email channel (a local SMTP
server): quiet hours in the customer's time zone move a send to their end, consent and
channel preferences suppress with the reason recorded, frequency caps per rolling day and
week, the global throttle, an unsubscribe that reaches sends already scheduled, and retries
after a failing SMTP server. Time is a clock the test moves; nothing sleeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from notify_support import (
    Clock,
    cart,
    email_settings,
    feed,
    identify,
    order,
    profile_id,
    rule,
    run_scheduler,
    sends,
    template,
)
from peers.smtp_peer import SmtpPeer

from c360.channels import delivery
from c360.notifications import policy, preferences
from c360.runtime import Runtime

#: A Saturday evening; New York moves its clocks forward that night (02:00 -> 03:00).
NY = ZoneInfo("America/New_York")
EVENING_BEFORE_DST = datetime(2026, 3, 7, 22, 0, tzinfo=NY)


def _engaged(runtime: Runtime, smtp: SmtpPeer, **changes) -> Runtime:
    return Runtime(email_settings(runtime.settings, smtp.port, **changes))


def _customer(user: str, at: datetime, consent=None, **traits):
    traits = {"email": f"{user}@example.com", "name": user.upper(), **traits}
    consent = {"marketing": True} if consent is None else consent
    return identify(user, at - timedelta(minutes=5), consent=consent, **traits)


def test_a_trigger_at_22_local_is_sent_at_08_local_in_the_customers_zone(runtime, smtp):
    rt = _engaged(runtime, smtp, quiet_hours="21:00-08:00")
    clock = Clock(EVENING_BEFORE_DST)
    template(rt)
    rule(rt)
    feed(rt, clock, _customer("u-1", clock.now, timezone="America/New_York"))
    feed(rt, clock, order("u-1", "20", clock.now))

    run_scheduler(rt, clock)
    held = sends(rt)[0]
    # 08:00 in New York the next morning is 12:00 UTC (EDT, UTC-4, from 02:00 that night)
    assert (held["state"], held["reason"]) == ("held", "quiet_hours")
    assert held["scheduled_at"] == datetime(2026, 3, 8, 12, 0, tzinfo=UTC)
    assert smtp.messages == []

    clock.now = datetime(2026, 3, 8, 11, 59, 59, tzinfo=UTC)
    assert run_scheduler(rt, clock) == 0
    assert smtp.messages == []

    clock.now = datetime(2026, 3, 8, 12, 0, tzinfo=UTC)
    run_scheduler(rt, clock)
    assert sends(rt)[0]["state"] == "enqueued"
    assert [m["To"] for m in smtp.messages] == ["u-1@example.com"]
    rt.close()


def test_a_customer_without_a_time_zone_gets_the_default_zone(runtime, smtp):
    rt = _engaged(runtime, smtp, quiet_hours="21:00-08:00", default_timezone="Asia/Ho_Chi_Minh")
    # 22:30 in Ho Chi Minh City (UTC+7 all year) is 15:30 UTC; 08:00 there is 01:00 UTC
    clock = Clock(datetime(2026, 5, 4, 15, 30, tzinfo=UTC))
    template(rt)
    rule(rt)
    feed(rt, clock, _customer("u-1", clock.now), order("u-1", "20", clock.now))

    run_scheduler(rt, clock)
    assert sends(rt)[0]["scheduled_at"] == datetime(2026, 5, 5, 1, 0, tzinfo=UTC)
    rt.close()


def test_quiet_hours_within_one_day_and_across_midnight():
    zone = ZoneInfo("UTC")
    at = lambda h, m=0: datetime(2026, 1, 1, h, m, tzinfo=zone)  # noqa: E731
    assert policy.quiet_until(at(23), "21:00-08:00", zone) == at(8) + timedelta(days=1)
    assert policy.quiet_until(at(7, 59), "21:00-08:00", zone) == at(8)
    assert policy.quiet_until(at(8), "21:00-08:00", zone) is None
    assert policy.quiet_until(at(20, 59), "21:00-08:00", zone) is None
    assert policy.quiet_until(at(13), "12:00-14:00", zone) == at(14)
    assert policy.quiet_until(at(14), "12:00-14:00", zone) is None
    assert policy.quiet_until(at(3), "", zone) is None


def test_no_consent_for_the_purpose_or_an_unsubscribed_channel_suppresses_with_the_reason(
    runtime, smtp
):
    rt = _engaged(runtime, smtp)
    clock = Clock(datetime(2026, 5, 4, 3, 0, tzinfo=UTC))
    template(rt)
    rule(rt)
    feed(
        rt,
        clock,
        _customer("never-said", clock.now, consent={}),
        _customer("said-no", clock.now, consent={"marketing": False}),
        _customer("other-purpose", clock.now, consent={"advertising": True}),
        _customer("unsubscribed", clock.now),
        _customer("yes", clock.now),
    )
    preferences.unsubscribe(
        rt, channel="email", address="UNSUBSCRIBED@example.com ", source="support desk"
    )
    users = ("never-said", "said-no", "other-purpose", "unsubscribed", "yes")
    feed(rt, clock, *(order(user, "9", clock.now) for user in users))

    run_scheduler(rt, clock)
    by_user = {
        user: next(s for s in sends(rt) if str(s["profile_id"]) == profile_id(rt, user))
        for user in users
    }
    assert {u: (s["state"], s["reason"]) for u, s in by_user.items()} == {
        "never-said": ("suppressed", "no_consent"),
        "said-no": ("suppressed", "no_consent"),
        "other-purpose": ("suppressed", "no_consent"),
        "unsubscribed": ("suppressed", "unsubscribed"),
        "yes": ("enqueued", None),
    }
    assert [m["To"] for m in smtp.messages] == ["yes@example.com"]
    rt.close()


def test_frequency_caps_per_rolling_day_and_week(runtime, smtp):
    rt = _engaged(runtime, smtp, notify_cap_per_day=1, notify_cap_per_week=2)
    clock = Clock(datetime(2026, 5, 4, 3, 0, tzinfo=UTC))
    template(rt)
    rule(rt, "now")
    rule(rt, "also-now")
    rule(rt, "next-day", delay_s=25 * 3600)
    rule(rt, "day-after", delay_s=50 * 3600)
    feed(rt, clock, _customer("u-1", clock.now), order("u-1", "9", clock.now))

    run_scheduler(rt, clock)
    clock.advance(hours=25)
    run_scheduler(rt, clock)
    clock.advance(hours=25)
    run_scheduler(rt, clock)

    by_rule = {s["rule_id"]: (s["state"], s["reason"]) for s in sends(rt)}
    assert list(by_rule.values()) == [
        ("enqueued", None),  # the day's one
        ("suppressed", "cap_per_day"),  # same day
        ("enqueued", None),  # a rolling day later: the week's second
        ("suppressed", "cap_per_week"),  # the week already had two
    ]
    assert len(smtp.messages) == 2
    rt.close()


def test_caps_count_what_a_customer_got_before_their_profiles_merged(runtime, smtp):
    rt = _engaged(runtime, smtp, notify_cap_per_day=2)
    clock = Clock(datetime(2026, 5, 4, 3, 0, tzinfo=UTC))
    template(rt)
    template(rt, "cart-reminder", subject="Your cart", body="You left something behind.")
    rule(rt, "first")
    rule(rt, "cart", trigger="cart_abandoned", template="cart-reminder")
    # one person, known twice: signed in on the web, anonymous on her phone; each orders
    on_phone = identify("ignored", clock.now, consent={"marketing": True}, email="dev@example.com")
    del on_phone["userId"]
    on_phone["anonymousId"] = "phone-1"
    feed(rt, clock, _customer("lan", clock.now), order("lan", "9", clock.now))
    phone_order = order("ignored", "12", clock.now)
    del phone_order["userId"]
    phone_order["anonymousId"] = "phone-1"
    feed(rt, clock, on_phone, phone_order)
    run_scheduler(rt, clock)
    assert len(smtp.messages) == 2  # a first purchase each, as far as c360 knew

    # she signs in on the phone with that address: the profiles merge; her cart there is
    # left for an hour
    feed(rt, clock, identify("lan", clock.advance(minutes=5), email="dev@example.com"))
    feed(rt, clock, cart("lan", clock.now))
    with rt.pool.connection() as conn:
        merged = conn.execute("SELECT count(*) FROM profiles WHERE merged_into IS NOT NULL")
        assert merged.fetchone()[0] == 1
    clock.advance(hours=1, minutes=1)
    run_scheduler(rt, clock)

    assert len(smtp.messages) == 2  # the day's two were hers, whichever profile got them
    assert (sends(rt)[-1]["state"], sends(rt)[-1]["reason"]) == ("suppressed", "cap_per_day")
    rt.close()


def test_the_global_throttle_holds_what_is_over_it_until_the_next_minute(runtime, smtp):
    rt = _engaged(runtime, smtp, notify_rate_per_minute=2)
    clock = Clock(datetime(2026, 5, 4, 3, 0, 30, tzinfo=UTC))
    template(rt)
    rule(rt)
    users = ("a", "b", "c")
    feed(rt, clock, *(_customer(u, clock.now) for u in users))
    feed(rt, clock, *(order(u, "9", clock.now) for u in users))

    run_scheduler(rt, clock)
    states = sorted((s["state"], s["reason"]) for s in sends(rt))
    assert states == [("enqueued", None), ("enqueued", None), ("held", "throttled")]
    held = next(s for s in sends(rt) if s["state"] == "held")
    assert held["scheduled_at"] == datetime(2026, 5, 4, 3, 1, tzinfo=UTC)
    assert len(smtp.messages) == 2

    clock.now = datetime(2026, 5, 4, 3, 1, tzinfo=UTC)
    run_scheduler(rt, clock)
    assert [s["state"] for s in sends(rt)] == ["enqueued"] * 3
    assert sorted(m["To"] for m in smtp.messages) == [f"{u}@example.com" for u in users]
    rt.close()


def test_a_one_click_unsubscribe_stops_the_sends_already_scheduled(runtime, smtp):
    from litestar.testing import TestClient

    from c360.api.app import create_app

    rt = _engaged(runtime, smtp)
    clock = Clock(datetime(2026, 5, 4, 3, 0, tzinfo=UTC))
    template(rt)
    rule(rt, "thanks")
    rule(rt, "follow-up", delay_s=3600)  # planned now, due in an hour
    feed(rt, clock, _customer("u-1", clock.now), order("u-1", "9", clock.now))
    run_scheduler(rt, clock)
    [mail] = smtp.messages
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = mail["List-Unsubscribe"].strip("<>")
    assert link.startswith("https://c360.example.com/u/")

    with TestClient(app=create_app(rt.settings)) as client:
        # a mail client's one-click POST: no cookie, no CSRF token, the RFC 8058 body only
        answer = client.post(
            link.removeprefix("https://c360.example.com"),
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert answer.status_code == 200, answer.text

    clock.advance(hours=1)
    run_scheduler(rt, clock)
    follow_up = sends(rt)[1]
    assert (follow_up["state"], follow_up["reason"]) == ("suppressed", "unsubscribed")
    assert len(smtp.messages) == 1
    history = [kind for kind, _, _ in delivery.events(rt, sends(rt)[0]["delivery_id"])]
    assert "unsubscribed" in history
    rt.close()


def test_a_failing_smtp_server_is_retried_and_the_customer_gets_one_message(runtime, smtp):
    rt = _engaged(runtime, smtp)
    clock = Clock(datetime(2026, 5, 4, 3, 0, tzinfo=UTC))
    template(rt)
    rule(rt)
    feed(rt, clock, _customer("u-1", clock.now), order("u-1", "9", clock.now))
    smtp.fail_next(2)

    for _ in range(6):  # well past the back-off of two failures
        run_scheduler(rt, clock)
        clock.advance(minutes=5)

    assert smtp.refused == 2
    assert [m["To"] for m in smtp.messages] == ["u-1@example.com"]
    sent = delivery.get(rt, sends(rt)[0]["delivery_id"])
    assert (sent.status, sent.attempts) == ("sent", 3)
    rt.close()


def test_a_cart_left_for_an_hour_is_sent_unless_an_order_came_after(runtime, smtp):
    rt = _engaged(runtime, smtp)
    clock = Clock(datetime(2026, 5, 4, 3, 0, tzinfo=UTC))
    template(rt, "cart-reminder", subject="Your cart", body="You left something behind.")
    rule(rt, "cart", trigger="cart_abandoned", template="cart-reminder")
    feed(rt, clock, _customer("left", clock.now), _customer("bought", clock.now))
    feed(rt, clock, cart("left", clock.now), cart("bought", clock.now))
    planned = {s["profile_id"]: s for s in sends(rt)}
    assert {s["scheduled_at"] for s in planned.values()} == {clock.now + timedelta(hours=1)}

    clock.advance(minutes=20)
    feed(rt, clock, order("bought", "30", clock.now))
    clock.advance(minutes=40)
    run_scheduler(rt, clock)

    outcome = {str(s["profile_id"]): (s["state"], s["reason"]) for s in sends(rt)}
    assert outcome == {
        profile_id(rt, "left"): ("enqueued", None),
        profile_id(rt, "bought"): ("suppressed", "ordered_since"),
    }
    assert [m["To"] for m in smtp.messages] == ["left@example.com"]
    rt.close()


def test_a_template_over_the_limits_on_a_customers_data_fails_that_send_with_the_reason(
    runtime, smtp
):
    rt = _engaged(runtime, smtp)
    clock = Clock(datetime(2026, 5, 4, 3, 0, tzinfo=UTC))
    # the sample data has no `reps`, so the save renders it empty; this customer's is huge
    template(rt, body="Hi {{ 'ab' * (profile.traits.reps|int) }}", html=None)
    rule(rt)
    feed(rt, clock, _customer("u-1", clock.now, reps=10**9), order("u-1", "9", clock.now))
    run_scheduler(rt, clock)
    [send] = sends(rt)
    assert send["state"] == "suppressed"
    assert send["reason"] == (
        "template_error: repeating str 1,000,000,000 times makes over 100,000 items"
    )
    assert smtp.messages == []
    rt.close()
