"""F4 faults a tester found, fixed: templates that printed Python values into customer mail
(None, ['Lan', 'Anh'], {'vi': 'Lan'}), quiet hours that ignored the time zone a browser puts
in every event's context, and quiet hours that ended before "now" on a night whose clocks go
back (or ended late on one whose clocks jump forward)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from markupsafe import escape
from notify_support import (
    Clock,
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

from c360.errors import InputError
from c360.notifications import policy, templates
from c360.runtime import Runtime
from c360.stages.f3_resolve import load_documents

NY = ZoneInfo("America/New_York")
LA = ZoneInfo("America/Los_Angeles")
GREETING = 'Hi {{ profile.traits.first_name|default("there") }}'


def _render(source: str, traits: dict, **row) -> templates.Rendered:
    fields = {"template_id": 1, "subject": source, "body": source, "html": source, **row}
    return templates.render(fields, {"profile": {"traits": traits}})


# -- 1. what data prints as ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first_name", "printed"),
    [
        (None, "there"),  # null is missing: default() applies
        (["Lan", "Anh"], ", ".join(["Lan", "Anh"])),
        ({"vi": "Lan"}, "Lan"),  # a mapping prints its values
        ({"vi": "Lan", "en": "Lana"}, ", ".join(["Lan", "Lana"])),
        ([], ""),
        ({}, ""),
        (["Lan", None, ""], "Lan"),  # empty items are skipped, not printed as ", , "
        ([["Lan"], {"x": "Anh"}], ", ".join(["Lan", "Anh"])),
    ],
)
def test_null_lists_and_mappings_print_as_a_marketer_reads_them(first_name, printed):
    rendered = _render(GREETING, {"first_name": first_name})
    expected = f"Hi {printed}"
    assert (rendered.subject, rendered.text, rendered.html) == (expected, expected, expected)


def test_a_bare_null_prints_nothing_and_is_not_defined():
    source = "[{{ profile.traits.a }}][{{ profile.traits['a'] }}][{{ profile.traits.a.b }}]"
    source += "{% if profile.traits.a is defined %}defined{% endif %}"
    assert _render(source, {"a": None}).text == "[][][]"


def test_true_and_false_print_as_json_spells_them():
    rendered = _render("{{ profile.traits.vip }}/{{ profile.traits.flags }}", {})
    assert rendered.text == "/"
    traits = {"vip": True, "flags": [True, False]}
    assert _render("{{ profile.traits.vip }}/{{ profile.traits.flags }}", traits).text == (
        "true/true, false"
    )


def test_list_items_are_escaped_one_by_one_in_html():
    names = ["<b>Lan</b>", "Anh & co"]
    rendered = _render("{{ profile.traits.names }}", {"names": names})
    assert rendered.text == ", ".join(names)
    assert rendered.html == ", ".join(str(escape(name)) for name in names)
    # what the template itself marked safe stays as it is
    html = _render(
        "{{ [profile.traits.names[0]|safe, profile.traits.names[1]] }}", {"names": names}
    )
    assert html.html == f"{names[0]}, {escape(names[1])}"


def test_filters_that_make_sequences_print_their_items():
    traits = {"names": ["lan", "anh"]}
    source = "{{ profile.traits.names|map('upper') }}|{{ profile.traits.names|reverse }}"
    expected = ", ".join(n.upper() for n in traits["names"]) + "|" + ", ".join(["anh", "lan"])
    assert _render(source, traits).text == expected


@pytest.mark.parametrize(
    "body",
    [
        "{{ [range(100000)] * 100000 }}",  # small to build, 10^10 items to print
        "{{ [[''] * 100000] * 100000 }}",  # nothing to print, but 10^10 items to look at
    ],
)
def test_printing_a_list_stays_inside_the_sandbox_limits(runtime, body):
    with pytest.raises(templates.TooBig, match="prints over 100,000 items"):
        _render(body, {})
    with pytest.raises(InputError, match="prints over 100,000 items"):
        template(runtime, name="huge-list", body=body)


def test_a_list_holding_itself_prints_once():
    source = "{% set a = ['Lan'] %}{{ a.append(a) }}{{ a }}"
    assert _render(source, {}).text == "Lan"


def test_customers_get_their_names_not_python_values(runtime, smtp):
    rt = Runtime(email_settings(runtime.settings, smtp.port))
    clock = Clock(datetime(2026, 5, 4, 3, 0, tzinfo=UTC))
    template(rt, subject=GREETING, body=GREETING + ", thanks.", html=None)
    rule(rt)
    names = {"no-name": None, "two-names": ["Lan", "Anh"], "by-language": {"vi": "Lan"}}
    for user, name in names.items():
        feed(rt, clock, _customer(user, clock.now, first_name=name))
        feed(rt, clock, order(user, "9", clock.now))

    run_scheduler(rt, clock)
    subjects = {m["To"].split("@")[0]: m["Subject"] for m in smtp.messages}
    assert subjects == {"no-name": "Hi there", "two-names": "Hi Lan, Anh", "by-language": "Hi Lan"}
    rt.close()


# -- 2. the time zone a browser reports ------------------------------------------------------


def _customer(user: str, at: datetime, zone: str | None = None, **traits) -> dict:
    event = identify(user, at - timedelta(minutes=5), consent={"marketing": True}, **traits)
    event["traits"]["email"] = f"{user}@example.com"
    return _in_zone(event, zone)


def _in_zone(event: dict, zone: str | None) -> dict:
    """The event as analytics.js sends it from a browser in `zone` (context.timezone)."""
    if zone is not None:
        event.setdefault("context", {})["timezone"] = zone
    return event


def test_a_send_at_night_in_the_browsers_zone_is_held_to_its_morning(runtime, smtp):
    rt = Runtime(
        email_settings(
            runtime.settings,
            smtp.port,
            quiet_hours="21:00-08:00",
            default_timezone="Asia/Ho_Chi_Minh",
        )
    )
    # 00:25 in Los Angeles; 14:25 in Ho Chi Minh City, where c360 thought she was
    clock = Clock(datetime(2026, 5, 5, 0, 25, tzinfo=LA))
    template(rt)
    rule(rt)
    zone = "America/Los_Angeles"
    feed(rt, clock, _customer("u-1", clock.now, zone))
    feed(rt, clock, _in_zone(order("u-1", "20", clock.now), zone))

    run_scheduler(rt, clock)
    [held] = sends(rt)
    assert (held["state"], held["reason"]) == ("held", "quiet_hours")
    morning = datetime.combine(clock.now.astimezone(LA).date(), time(8), tzinfo=LA)
    assert held["scheduled_at"] == morning
    assert smtp.messages == []
    rt.close()


def test_the_zone_comes_from_traits_then_the_newest_valid_event_context(runtime):
    at = datetime(2026, 5, 4, 3, 0, tzinfo=UTC)
    clock = Clock(at)
    later = at + timedelta(hours=1)
    customers = {
        # trait, then contexts oldest first -> the zone expected
        "traveller": (None, ["Asia/Tokyo", "America/Los_Angeles"], "America/Los_Angeles"),
        "trait": ("Europe/Paris", ["America/Los_Angeles"], "Europe/Paris"),
        "typo": (None, ["Mars/Olympus"], runtime.settings.default_timezone),
        "typo-later": (None, ["Asia/Tokyo", "Not/A_Zone"], "Asia/Tokyo"),
        "bad-trait": ("Nowhere/Town", ["Asia/Tokyo"], "Asia/Tokyo"),
        "server-only": (None, [None], runtime.settings.default_timezone),
    }
    for user, (trait, zones, _) in customers.items():
        traits = {"timezone": trait} if trait else {}
        feed(runtime, clock, _customer(user, at, **traits))
        for moment, zone in zip((at, later), zones, strict=False):
            feed(runtime, clock, _in_zone(order(user, "5", moment), zone))

    found = {}
    with runtime.pool.connection() as conn:
        for user in customers:
            [doc] = load_documents(conn, [profile_id(runtime, user)])
            found[user] = policy.timezone_of(doc, runtime.settings, conn).key
    assert found == {user: expected for user, (_, _, expected) in customers.items()}


# -- 3. daylight saving ----------------------------------------------------------------------


def test_quiet_hours_ending_in_the_hour_clocks_repeat_end_after_now():
    # 06:15 UTC on 1 November 2026 is 01:15 EST, the second time New York reads 01:15
    now = datetime(2026, 11, 1, 6, 15, tzinfo=UTC)
    ends = policy.quiet_until(now, "21:00-01:30", NY)
    # the second 01:30 that night: EST is UTC-5
    assert ends.astimezone(UTC) == datetime(2026, 11, 1, 1, 30, tzinfo=UTC) + timedelta(hours=5)
    # held during the first 01:15 (EDT, UTC-4), the first 01:30 ends it
    first = policy.quiet_until(now - timedelta(hours=1), "21:00-01:30", NY)
    assert first.astimezone(UTC) == datetime(2026, 11, 1, 1, 30, tzinfo=UTC) + timedelta(hours=4)


def test_quiet_hours_ending_in_the_skipped_hour_end_when_clocks_jump():
    # 06:30 UTC on 8 March 2026 is 01:30 EST; at 07:00 UTC (02:00 EST) clocks read 03:00 EDT
    now = datetime(2026, 3, 8, 6, 30, tzinfo=UTC)
    ends = policy.quiet_until(now, "21:00-02:30", NY)
    assert ends.astimezone(UTC) == datetime(2026, 3, 8, 2, 0, tzinfo=UTC) + timedelta(hours=5)
    assert ends.astimezone(NY).time() == time(3, 0)


#: (zone, a moment near a clock change, quiet hours that start or end around it)
SWEEPS = [
    ("America/New_York", datetime(2026, 3, 8, 7, 0, tzinfo=UTC)),  # 02:00 -> 03:00
    ("America/New_York", datetime(2026, 11, 1, 6, 0, tzinfo=UTC)),  # 02:00 -> 01:00
    ("Australia/Lord_Howe", datetime(2026, 10, 3, 15, 30, tzinfo=UTC)),  # half an hour on
    ("Australia/Lord_Howe", datetime(2026, 4, 4, 15, 0, tzinfo=UTC)),  # half an hour back
    ("America/Santiago", datetime(2026, 9, 6, 4, 0, tzinfo=UTC)),  # midnight -> 01:00
    ("Pacific/Apia", datetime(2011, 12, 30, 10, 0, tzinfo=UTC)),  # 30 December skipped
]
SPANS = [
    *("21:00-01:30", "21:00-01:45", "21:00-02:30", "21:00-02:15", "01:15-02:45"),
    *("02:30-08:00", "23:30-00:30", "22:00-08:00"),
]


@pytest.mark.parametrize(("zone_name", "change"), SWEEPS)
def test_quiet_hours_end_where_a_minute_by_minute_walk_of_the_clock_leaves_them(zone_name, change):
    zone = ZoneInfo(zone_name)
    start, stop = change - timedelta(hours=16), change + timedelta(hours=16)
    assert start.astimezone(zone).utcoffset() != stop.astimezone(zone).utcoffset()
    for span in SPANS:
        now = start
        while now < stop:
            expected = _walk_to_end(now, span, zone)
            got = policy.quiet_until(now, span, zone)
            assert (got and got.astimezone(UTC)) == expected, (span, now)
            assert got is None or got > now
            now += timedelta(minutes=20)


def test_a_send_held_in_the_repeated_hour_is_decided_once_at_its_end(runtime, smtp):
    rt = Runtime(email_settings(runtime.settings, smtp.port, quiet_hours="21:00-01:30"))
    clock = Clock(datetime(2026, 11, 1, 6, 15, tzinfo=UTC))  # 01:15 EST
    template(rt)
    rule(rt)
    feed(rt, clock, _customer("u-1", clock.now, timezone="America/New_York"))
    feed(rt, clock, order("u-1", "20", clock.now))

    assert run_scheduler(rt, clock) == 1
    end = datetime(2026, 11, 1, 6, 30, tzinfo=UTC)  # 01:30 EST
    assert sends(rt)[0]["scheduled_at"] == end
    clock.now = end - timedelta(seconds=1)
    assert run_scheduler(rt, clock) == 0  # not re-decided every tick
    clock.now = end
    assert run_scheduler(rt, clock) == 1
    assert sends(rt)[0]["state"] == "enqueued"
    assert len(smtp.messages) == 1
    rt.close()


def _walk_to_end(now: datetime, span: str, zone: ZoneInfo) -> datetime | None:
    """The first whole minute from `now` at which the clock in `zone` is outside `span`."""
    start, end = (time.fromisoformat(part) for part in span.split("-"))
    moment = now.astimezone(UTC)
    while _quiet(moment.astimezone(zone).time(), start, end):
        moment = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return None if moment == now else moment


def _quiet(clock: time, start: time, end: time) -> bool:
    if start < end:
        return start <= clock < end
    return clock >= start or clock < end
