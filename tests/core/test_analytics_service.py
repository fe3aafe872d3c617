"""The analytics service functions on real engines: events sent through the gateway, moved by
the real stages into PostgreSQL and the Parquet lake (read by chdb), then every number of the
overview, trends, RFM, cohorts and drill-downs compared with sums worked out here in Python
from the events as sent."""

from __future__ import annotations

import base64
import random
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

import pytest

from c360.adapters.bus import ID_RESOLUTION, RAW_EVENTS
from c360.analytics.cohorts import cohorts
from c360.analytics.drill import cohort_profiles, drill_events, drill_profiles, profile_events
from c360.analytics.filters import Filters, parse_filters
from c360.analytics.overview import compute_overview
from c360.analytics.rfm import compute_rfm, rfm, rfm_cell
from c360.analytics.trends import trends
from c360.errors import InputError
from c360.stages import f2_persist, f3_resolve, lake_sink

WEB = {"Authorization": "Basic " + base64.b64encode(b"test-write-key-1:").decode()}
IOS = {"Authorization": "Basic " + base64.b64encode(b"test-write-key-2:").decode()}

#: country of each IP by geoip2fast's bundled data
IPS = {"8.8.8.8": "US", "113.160.0.1": "VN", None: "unknown"}


def drain(runtime, topic, group, stage):
    while True:
        deliveries = runtime.bus.consume(topic, group, "test-worker", count=50, block_ms=10)
        if not deliveries:
            return
        for delivery in deliveries:
            stage(f"{delivery.stream}-{delivery.entry_id}".replace(":", "-"), delivery.payloads)
        runtime.bus.ack(group, deliveries)


def run_stages(runtime):
    drain(runtime, RAW_EVENTS, "f2", lambda _n, p: f2_persist.persist(runtime, p))
    drain(runtime, RAW_EVENTS, "lake", lambda name, p: lake_sink.sink(runtime, f"b-{name}", p))
    drain(runtime, ID_RESOLUTION, "f3", lambda _n, p: f3_resolve.resolve(runtime, p))


def make_events(seed: int = 11, count: int = 160) -> list[tuple[str, dict]]:
    """(source, event) pairs over 70 days of 2026: orders with cent amounts, page views and
    identifies, from 9 users, some with an IP that tells their country."""
    rng = random.Random(seed)
    sent = []
    for n in range(count):
        user = f"user-{rng.randrange(9)}"
        when = datetime(2026, 1, 1, 12) + timedelta(days=rng.randrange(70), hours=rng.randrange(11))
        kind = rng.choice(["order", "order", "page", "identify"])
        event = {"userId": user, "messageId": f"m-{n}", "timestamp": when.isoformat() + "Z"}
        ip = rng.choice(list(IPS))
        if ip:
            event["context"] = {"ip": ip}
        if kind == "order":
            cents = rng.randrange(100, 90_000)
            event |= {"type": "track", "event": "Order Completed"}
            event["properties"] = {"revenue": f"{cents // 100}.{cents % 100:02d}"}
        elif kind == "page":
            event |= {"type": "page", "name": "Home"}
        else:
            event |= {"type": "identify", "traits": {"plan": "pro"}}
        sent.append((rng.choice(["web", "ios"]), event))
    return sent


def send(client, runtime, sent):
    for source in ("web", "ios"):
        batch = [event for s, event in sent if s == source]
        auth = WEB if source == "web" else IOS
        for start in range(0, len(batch), 50):
            answer = client.post(
                "/v1/batch", json={"batch": batch[start : start + 50]}, headers=auth
            )
            assert answer.status_code == 200, answer.text
    run_stages(runtime)


def day_of(event) -> str:
    return event["timestamp"][:10]


def key_of(event) -> str:
    return event["event"] if event["type"] == "track" else event["type"]


def country_of(event) -> str:
    return IPS[event.get("context", {}).get("ip")]


def revenue_of(event) -> Decimal:
    return Decimal(event["properties"]["revenue"])


def is_order(event) -> bool:
    return event["type"] == "track"


@pytest.fixture
def loaded(client, runtime):
    sent = make_events()
    send(client, runtime, sent)
    return sent


def test_the_overview_counts_every_event_customer_and_cent(runtime, loaded):
    events = [event for _source, event in loaded]
    answer = compute_overview(runtime, Filters())

    assert {p["period"]: p["events"] for p in answer["events"]} == Counter(map(day_of, events))
    assert answer["events_total"] == len(events)
    assert answer["active_customers"] == len({e["userId"] for e in events})
    orders = [e for e in events if is_order(e)]
    assert answer["orders_total"] == len(orders)
    assert answer["revenue_total"] == sum(map(revenue_of, orders))
    by_day = defaultdict(Decimal)
    for order in orders:
        by_day[day_of(order)] += revenue_of(order)
    revenue = {p["period"]: p["revenue"] for p in answer["revenue"] if p["orders"]}
    assert revenue == by_day
    assert all(isinstance(p["revenue"], Decimal) for p in answer["revenue"])
    first = {}
    for event in sorted(events, key=lambda e: e["timestamp"]):
        first.setdefault(event["userId"], day_of(event))
    new = {p["period"]: p["profiles"] for p in answer["new_profiles"] if p["profiles"]}
    assert new == Counter(first.values())
    assert answer["profiles_total"] == len(first)
    assert answer["dlq_size"] == 0


def test_the_overview_follows_the_date_range_sources_and_event_types(runtime, loaded):
    params = {
        "date_from": "2026-01-10",
        "date_to": "2026-02-05",
        "source": "ios",
        "event_type": "Order Completed,page",
    }
    answer = compute_overview(runtime, parse_filters(params))

    kept = [
        e
        for s, e in loaded
        if s == "ios" and "2026-01-10" <= day_of(e) <= "2026-02-05" and e["type"] != "identify"
    ]
    days = [p["period"] for p in answer["events"]]
    assert days[0] == "2026-01-10" and days[-1] == "2026-02-05" and len(days) == 27
    assert {p["period"]: p["events"] for p in answer["events"] if p["events"]} == Counter(
        map(day_of, kept)
    )
    assert answer["active_customers"] == len({e["userId"] for e in kept})
    assert answer["revenue_total"] == sum(revenue_of(e) for e in kept if is_order(e))


def test_weekly_periods_start_on_monday(runtime, loaded):
    answer = compute_overview(runtime, Filters(granularity="week"))

    expected = Counter()
    for _source, event in loaded:
        day = date.fromisoformat(day_of(event))
        expected[(day - timedelta(days=day.weekday())).isoformat()] += 1
    assert {p["period"]: p["events"] for p in answer["events"]} == expected
    assert all(date.fromisoformat(p["period"]).weekday() == 0 for p in answer["events"])


def test_dead_letters_are_counted_in_the_overview(client, runtime):
    answer = client.post(
        "/v1/batch", json={"batch": [{"type": "track", "event": "x"}]}, headers=WEB
    )
    assert answer.status_code == 200
    assert answer.json()["rejected"] == 1

    assert compute_overview(runtime, Filters())["dlq_size"] == 1


@pytest.mark.parametrize("by", ["type", "source", "country"])
def test_trends_break_events_down_per_key_and_period(runtime, loaded, by):
    answer = trends(runtime, Filters(), by=by)

    expected = defaultdict(Counter)
    for source, event in loaded:
        key = {"type": key_of(event), "source": source, "country": country_of(event)}[by]
        expected[key][day_of(event)] += 1
    found = {
        series["key"]: {p["period"]: p["events"] for p in series["points"] if p["events"]}
        for series in answer["series"]
    }
    assert found == expected
    totals = [series["total"] for series in answer["series"]]
    assert totals == sorted(totals, reverse=True)


def test_trends_give_active_customers_and_revenue_per_week(runtime, loaded):
    answer = trends(runtime, Filters(granularity="week"), by="source")

    customers, money = defaultdict(set), defaultdict(Decimal)
    for _source, event in loaded:
        day = date.fromisoformat(day_of(event))
        week = (day - timedelta(days=day.weekday())).isoformat()
        customers[week].add(event["userId"])
        if is_order(event):
            money[week] += revenue_of(event)
    assert {p["period"]: p["customers"] for p in answer["active_customers"]} == {
        week: len(users) for week, users in customers.items()
    }
    assert {p["period"]: p["revenue"] for p in answer["revenue"] if p["orders"]} == money


def expected_rfm(loaded, as_of: date) -> dict[str, tuple[int, int, Decimal]]:
    """userId -> (recency, frequency, monetary) and the scores by the documented rule."""
    last, orders, money = {}, Counter(), defaultdict(Decimal)
    for _source, event in loaded:
        if is_order(event) and date.fromisoformat(day_of(event)) <= as_of:
            user = event["userId"]
            last[user] = max(last.get(user, ""), day_of(event))
            orders[user] += 1
            money[user] += revenue_of(event)
    recency = {u: (as_of - date.fromisoformat(d)).days for u, d in last.items()}
    n = len(last)

    def score(values, worse_first_key):
        return {
            u: 1 + 5 * sum(1 for w in values if worse_first_key(values[w], values[u])) // n
            for u in values
        }

    r = score(recency, lambda other, mine: other > mine)
    f = score(dict(orders), lambda other, mine: other < mine)
    m = score(dict(money), lambda other, mine: other < mine)
    return {u: (recency[u], orders[u], money[u], r[u], f[u], m[u]) for u in last}


def test_the_rfm_grid_scores_by_the_documented_rule(runtime, loaded):
    answer = rfm(runtime)

    latest = max(day_of(e) for _s, e in loaded if is_order(e))
    assert answer["as_of"] == latest
    expected = expected_rfm(loaded, date.fromisoformat(latest))
    cells = defaultdict(lambda: [0, Decimal(0)])
    for _recency, _orders, money, r, f, _m in expected.values():
        cells[(r, f)][0] += 1
        cells[(r, f)][1] += money
    assert len(answer["cells"]) == 25
    for cell in answer["cells"]:
        count, total = cells.get((cell["r"], cell["f"]), (0, Decimal(0)))
        assert (cell["customers"], cell["monetary_total"]) == (count, total)
        mean = (total / count).quantize(Decimal("0.01"), ROUND_HALF_EVEN) if count else 0
        assert cell["monetary_mean"] == mean
    assert answer["customers"] == len(expected)


def test_an_rfm_cell_lists_its_customers_largest_first_in_pages(runtime, loaded):
    latest = date.fromisoformat(max(day_of(e) for _s, e in loaded if is_order(e)))
    expected = expected_rfm(loaded, latest)
    biggest = Counter((v[3], v[4]) for v in expected.values()).most_common(1)[0][0]
    members = sorted(
        (u for u, v in expected.items() if (v[3], v[4]) == biggest),
        key=lambda u: -expected[u][2],
    )

    first = rfm_cell(runtime, *biggest, limit=1)
    rest = rfm_cell(runtime, *biggest, limit=100, offset=1)

    assert first["customers"] == len(members)
    listed = first["profiles"] + rest["profiles"]
    assert [p["user_id"] for p in listed] == members
    for row in listed:
        recency, orders, money, r, f, m = expected[row["user_id"]]
        assert (row["recency_days"], row["frequency"], row["monetary"]) == (recency, orders, money)
        assert (row["r"], row["f"], row["m"]) == (r, f, m)


def test_rfm_as_of_a_past_day_leaves_later_orders_out(runtime, loaded):
    as_of = date(2026, 2, 1)
    answer = compute_rfm(runtime, as_of)

    expected = expected_rfm(loaded, as_of)
    assert answer["customers"] == len(expected)
    assert answer["monetary_total"] == sum(v[2] for v in expected.values())


def test_cohorts_count_each_customer_once_per_month(runtime, loaded):
    answer = cohorts(runtime)

    months = defaultdict(set)
    for _source, event in loaded:
        if is_order(event):
            months[event["userId"]].add(day_of(event)[:7])
    first = {u: min(ms) for u, ms in months.items()}
    expected = defaultdict(Counter)
    for user, ms in months.items():
        y0, m0 = map(int, first[user].split("-"))
        for month in ms:
            y, m = map(int, month.split("-"))
            expected[first[user]][(y - y0) * 12 + m - m0] += 1
    assert [c["cohort"] for c in answer["cohorts"]] == sorted(expected)
    for cohort in answer["cohorts"]:
        size = expected[cohort["cohort"]][0]
        assert cohort["size"] == size
        for point in cohort["retention"]:
            assert point["customers"] == expected[cohort["cohort"]][point["offset"]]
            share = (Decimal(point["customers"]) / size).quantize(Decimal("0.0001"))
            assert point["share"] == share
    assert answer["cohorts"][0]["retention"][-1]["offset"] == answer["months"] - 1


def test_drilling_into_a_trend_point_lists_the_events_behind_it(runtime, loaded):
    day = Counter(day_of(e) for _s, e in loaded).most_common(1)[0][0]
    filters = Filters()

    answer = drill_events(runtime, filters, date.fromisoformat(day), limit=2)
    rest = drill_events(runtime, filters, date.fromisoformat(day), limit=100, offset=2)

    expected = sorted((e["timestamp"], s, e["messageId"]) for s, e in loaded if day_of(e) == day)
    rows = answer["rows"] + rest["rows"]
    assert answer["total"] == len(expected)
    assert [(r["source"], r["message_id"]) for r in rows] == [(s, m) for _t, s, m in expected]
    by_id = {e["messageId"]: e for _s, e in loaded}
    for row in rows:
        event = by_id[row["message_id"]]
        assert row["user_id"] == event["userId"]
        assert row["revenue"] == (revenue_of(event) if is_order(event) else None)
        assert row["time"].startswith(day)


def test_drilling_into_a_country_key_matches_the_trend(runtime, loaded):
    answer = trends(runtime, Filters(), by="country")
    series = next(s for s in answer["series"] if s["key"] == "VN")

    rows = drill_events(runtime, Filters(), by="country", key="VN", limit=1000)

    assert rows["total"] == series["total"]


def test_drilling_into_active_customers_and_new_profiles(runtime, loaded):
    filters = parse_filters({"date_from": "2026-01-01", "date_to": "2026-01-20"})
    active = drill_profiles(runtime, filters, "active_customers", limit=1000)
    new = drill_profiles(runtime, filters, "new_profiles", limit=1000)

    in_range = [e for _s, e in loaded if day_of(e) <= "2026-01-20"]
    assert {p["user_id"] for p in active["profiles"]} == {e["userId"] for e in in_range}
    assert active["total"] == compute_overview(runtime, filters)["active_customers"]
    first = {}
    for _s, event in sorted(loaded, key=lambda pair: pair[1]["timestamp"]):
        first.setdefault(event["userId"], day_of(event))
    assert {p["user_id"] for p in new["profiles"]} == {
        u for u, d in first.items() if d <= "2026-01-20"
    }
    revenues = [p["revenue"] for p in active["profiles"]]
    assert revenues == sorted(revenues, reverse=True)


def test_drilling_into_a_cohort_cell_lists_its_customers(runtime, loaded):
    cohort = cohorts(runtime)["cohorts"][0]
    point = cohort["retention"][1]

    answer = cohort_profiles(runtime, cohort["cohort"], 1, limit=1000)

    assert answer["total"] == point["customers"] == len(answer["profiles"])


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"date_from": "2026-13-01"}, "invalid_date"),
        ({"date_to": "yesterday"}, "invalid_date"),
        ({"date_from": "2026-03-02", "date_to": "2026-03-01"}, "invalid_date_range"),
        ({"granularity": "month"}, "invalid_granularity"),
        ({"dat_from": "2026-03-01"}, "unknown_parameter"),
        ({"source": ",".join(f"s{n}" for n in range(101))}, "too_many_sources"),
    ],
)
def test_bad_filters_are_refused_with_what_to_change(params, code):
    with pytest.raises(InputError) as caught:
        parse_filters(params)

    assert caught.value.code == code
    assert caught.value.message


def test_bad_breakdowns_cells_and_pages_are_refused(runtime):
    cases = [
        (lambda: trends(runtime, Filters(), by="city"), "invalid_breakdown"),
        (lambda: rfm_cell(runtime, 0, 3), "invalid_score"),
        (lambda: rfm_cell(runtime, 3, 6), "invalid_score"),
        (lambda: rfm_cell(runtime, 3, 3, limit=0), "invalid_page"),
        (lambda: drill_events(runtime, Filters(), offset=-1), "invalid_page"),
        (lambda: drill_events(runtime, Filters(), by="type"), "invalid_breakdown"),
        (lambda: drill_profiles(runtime, Filters(), "revenue"), "invalid_metric"),
        (lambda: cohort_profiles(runtime, "1997/01", 0), "invalid_cohort"),
        (lambda: cohort_profiles(runtime, "1997-01", -1), "invalid_offset"),
    ]
    for call, code in cases:
        with pytest.raises(InputError) as caught:
            call()
        assert caught.value.code == code


def test_an_empty_store_gives_zeros_not_errors(runtime):
    answer = compute_overview(runtime, Filters())
    assert (answer["events_total"], answer["revenue_total"], answer["profiles_total"]) == (
        0,
        0,
        0,
    )
    assert rfm(runtime)["customers"] == 0
    assert cohorts(runtime) == {"cohorts": [], "months": 0}


def test_a_very_long_range_lists_only_the_periods_with_data(runtime, loaded):
    answer = compute_overview(
        runtime, parse_filters({"date_from": "1990-01-01", "date_to": "2026-12-31"})
    )

    assert [p["period"] for p in answer["events"]] == sorted({day_of(e) for _s, e in loaded})


def test_a_profiles_timeline_lists_its_events_newest_first(runtime, loaded):
    user = Counter(e["userId"] for _s, e in loaded).most_common(1)[0][0]
    active = drill_profiles(runtime, Filters(), "active_customers", limit=1000)
    profile_id = next(p["profile_id"] for p in active["profiles"] if p["user_id"] == user)

    first = profile_events(runtime, profile_id, limit=3)
    rest = profile_events(runtime, profile_id, limit=1000, offset=3)

    mine = sorted((e for _s, e in loaded if e["userId"] == user), key=lambda e: e["timestamp"])
    assert first["total"] == len(mine)
    times = [row["time"] for row in first["rows"] + rest["rows"]]
    assert times == sorted(times, reverse=True)
    assert {row["message_id"] for row in first["rows"] + rest["rows"]} == {
        e["messageId"] for e in mine
    }
    assert profile_events(runtime, "not-a-uuid")["total"] == 0
