"""The segment filter model: what it accepts, and a clear error for each malformed spec."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from c360.segments.spec import (
    MAX_CONDITIONS,
    MAX_DEPTH,
    Aggregate,
    EventCount,
    Group,
    Identifier,
    Not,
    Property,
    SpecError,
    parse,
)
from c360.segments.sql import condition


def test_a_nested_filter_reads_into_typed_nodes():
    node = parse(
        {
            "all": [
                {"field": "revenue", "op": ">=", "value": Decimal("99.95")},
                {"any": [{"trait": "plan", "op": "=", "value": "gold"}]},
                {"not": {"identifier": "email", "op": "=", "value": " Lan@Example.VN "}},
                {"event": "Order Completed", "count": {"op": ">=", "value": 2}, "within_days": 90},
                {"field": "last_seen", "within_days": 30},
                {"attribute": "tier", "op": "exists"},
            ]
        }
    )
    assert node == Group(
        "all",
        (
            Aggregate("revenue", ">=", Decimal("99.95")),
            Group("any", (Property("traits", "plan", "=", "gold"),)),
            Not(Identifier("email", "=", ("lan@example.vn",))),
            EventCount("Order Completed", ">=", 2, within_days=90),
            Aggregate("last_seen", ">=", within_days=30),
            Property("attributes", "tier", "exists"),
        ),
    )


def test_identifier_values_are_normalised_like_f3_does():
    node = parse({"identifier": "phone", "op": "in", "value": ["0912 345 678", "+84912345679"]})
    assert node == Identifier("phone", "in", ("+84912345678", "+84912345679"))


def test_an_event_window_between_two_dates_reads_as_utc_times():
    node = parse({"event": "Viewed", "between": ["2026-01-01", "2026-02-01T00:00:00Z"]})
    assert node == EventCount(
        "Viewed",
        ">=",
        1,
        since=datetime(2026, 1, 1, tzinfo=UTC),
        until=datetime(2026, 2, 1, tzinfo=UTC),
    )


def test_a_float_from_a_plain_json_decoder_keeps_the_literal_as_decimal():
    assert parse({"field": "revenue", "op": ">", "value": 0.1}).value == Decimal("0.1")


def _nested(depth: int) -> dict:
    spec: dict = {"field": "order_count", "op": ">", "value": 0}
    for _ in range(depth):
        spec = {"not": spec}
    return spec


@pytest.mark.parametrize(
    ("spec", "code", "hint"),
    [
        ({"field": "revenu", "op": ">", "value": 1}, "segment_unknown_field", "revenue"),
        ({"field": "revenue", "op": "~", "value": 1}, "segment_invalid_op", ">="),
        ({"field": "revenue", "op": "contains", "value": "1"}, "segment_invalid_op", "use one of"),
        ({"trait": "plan", "op": "=", "value": "x", "colour": 1}, "segment_unknown_key", "colour"),
        ({"color": "red"}, "segment_unknown_key", "field, trait"),
        ([1, 2], "segment_invalid", "must be an object"),
        ({"all": {"field": "revenue"}}, "segment_invalid", "must be a list"),
        ({"any": []}, "segment_invalid", "at least one"),
        ({"field": "revenue", "op": ">", "value": "lots"}, "segment_invalid_value", "99.50"),
        ({"field": "revenue", "op": ">", "value": True}, "segment_invalid_value", "plain number"),
        ({"field": "revenue", "op": ">"}, "segment_invalid_value", "needs a value"),
        ({"field": "order_count", "op": ">", "value": 1.5}, "segment_invalid_value", "whole"),
        ({"field": "last_seen", "op": ">", "value": "yesterday"}, "segment_invalid_value", "ISO"),
        ({"field": "revenue", "op": "in", "value": []}, "segment_invalid_value", "list of 1"),
        ({"trait": "plan", "op": "=", "value": {"a": 1}}, "segment_invalid_value", "text, a"),
        ({"trait": "plan", "op": "<", "value": False}, "segment_invalid_value", "true / false"),
        ({"trait": "plan", "op": "contains", "value": 3}, "segment_invalid_value", "text value"),
        ({"trait": "", "op": "exists"}, "segment_invalid_value", "1 to 500"),
        ({"trait": "a", "op": "in", "value": [1, "x"]}, "segment_invalid_value", "not both"),
        ({"trait": "a\x00b", "op": "exists"}, "segment_invalid_value", "NUL"),
        ({"identifier": "email", "op": "=", "value": "nobody"}, "segment_invalid_value", "email"),
        ({"identifier": "phone", "op": "<", "value": "1"}, "segment_invalid_op", "exists"),
        ({"event": "A", "within_weeks": 3}, "segment_unknown_key", "within_weeks"),
        ({"event": "A", "within_days": 0}, "segment_invalid_window", "1 to"),
        ({"event": "A", "within_days": "90"}, "segment_invalid_window", "whole number"),
        ({"event": "A", "between": ["2026-01-01"]}, "segment_invalid_window", "[from, to]"),
        ({"event": "A", "between": ["2026-02-01", "2026-01-01"]}, "segment_invalid_window", "from"),
        ({"event": "A", "between": ["soon", "2026-01-01"]}, "segment_invalid_window", "ISO"),
        ({"event": "A", "within_days": 3, "between": []}, "segment_invalid_window", "not both"),
        ({"event": "A", "count": 2}, "segment_invalid_value", "an object"),
        ({"event": "A", "count": {"op": "in", "value": 2}}, "segment_invalid_op", ">="),
        ({"event": "A", "count": {"op": ">", "value": -1}}, "segment_invalid_value", "0 to"),
        ({"field": "revenue", "within_days": 3}, "segment_invalid_window", "time field"),
        (_nested(MAX_DEPTH + 1), "segment_too_deep", "flatten"),
        (
            {"all": [{"field": "event_count", "op": ">", "value": 0}] * (MAX_CONDITIONS + 1)},
            "segment_too_large",
            "at most",
        ),
    ],
)
def test_a_malformed_filter_is_refused_with_a_message_naming_the_fix(spec, code, hint):
    with pytest.raises(SpecError) as caught:
        parse(spec)
    assert caught.value.code == code
    assert hint in caught.value.message
    assert caught.value.status_code == 400


def test_the_error_names_where_in_the_tree_it_is():
    with pytest.raises(SpecError) as caught:
        parse({"all": [{"trait": "a", "op": "exists"}, {"any": [{"field": "x", "op": "="}]}]})
    assert "segment.all[1].any[0].field" in caught.value.message


def test_nesting_up_to_the_limit_is_accepted():
    assert parse(_nested(MAX_DEPTH)) is not None


def test_names_and_values_reach_sql_only_as_parameters():
    evil = "x'); DROP TABLE profiles; --"
    node = parse(
        {
            "all": [
                {"trait": evil, "op": "=", "value": evil},
                {"attribute": evil, "op": "contains", "value": evil},
                {"identifier": evil, "op": "=", "value": evil},
                {"event": evil, "within_days": 3},
            ]
        }
    )
    sql, params = condition(node, datetime.now(UTC))
    assert "DROP" not in sql and "'x'" not in sql
    assert sql.count("%s") == len(params)
    assert params.count(evil) == 7  # trait, attribute, identifier: name and value; event
