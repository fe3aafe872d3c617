"""Event time: Segment timestamps parsed, clock skew corrected exactly, implausible times
refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from c360.events.timestamps import event_time, parse_time

RECEIVED = datetime(2026, 5, 6, 7, 8, 9, 250_000, tzinfo=UTC)
EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)
MAX_FUTURE = timedelta(hours=24)


def _decide(timestamp: object, sent_at: object, received: datetime = RECEIVED):
    return event_time(timestamp, sent_at, received, earliest=EARLIEST, max_future=MAX_FUTURE)


def _ms(moment: datetime) -> int:
    """Milliseconds since the epoch, by integer arithmetic on the fields."""
    days = (moment.date() - datetime(1970, 1, 1).date()).days
    seconds = days * 86_400 + moment.hour * 3600 + moment.minute * 60 + moment.second
    return seconds * 1000 + moment.microsecond // 1000


def test_a_z_suffixed_time_is_read_as_utc():
    assert parse_time("2026-05-06T07:08:09.123Z") == datetime(
        2026, 5, 6, 7, 8, 9, 123_000, tzinfo=UTC
    )


def test_an_offset_time_is_converted_to_utc():
    assert parse_time("2026-05-06T14:08:09+07:00") == datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)


def test_a_time_without_an_offset_is_taken_as_utc():
    assert parse_time("2026-05-06T07:08:09") == datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)


def test_an_aware_datetime_is_converted_to_utc():
    hanoi = timezone(timedelta(hours=7))

    moment = parse_time(datetime(2026, 5, 6, 14, 0, tzinfo=hanoi))

    assert moment == datetime(2026, 5, 6, 7, 0, tzinfo=UTC)
    assert moment.utcoffset() == timedelta(0)


@pytest.mark.parametrize("value", [None, "", "yesterday", 1_700_000_000, {"t": 1}, "2026-13-01"])
def test_what_is_not_an_iso_time_parses_to_none(value):
    assert parse_time(value) is None


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_time_that_leaves_the_calendar_in_utc_parses_to_none(value):
    assert parse_time(value) is None


def test_skew_correction_adds_receipt_minus_sent_at_to_the_millisecond():
    # The device clock is 3 min 27.981 s behind the server.
    result = _decide("2026-05-06T07:01:00.500Z", "2026-05-06T07:04:41.269Z")

    expected_ms = _ms(datetime(2026, 5, 6, 7, 1, 0, 500_000)) + (
        _ms(RECEIVED) - _ms(datetime(2026, 5, 6, 7, 4, 41, 269_000))
    )
    assert _ms(result.timestamp) == expected_ms
    assert result.timestamp == datetime(2026, 5, 6, 7, 4, 28, 481_000, tzinfo=UTC)
    assert result.warnings == ()


def test_a_clock_running_ahead_is_corrected_backwards():
    result = _decide("2026-05-06T09:00:00.000Z", "2026-05-06T09:08:09.251Z")

    assert result.timestamp == datetime(2026, 5, 6, 6, 59, 59, 999_000, tzinfo=UTC)


def test_skew_correction_across_a_day_and_an_offset_is_exact():
    result = _decide("2026-05-06T23:59:59.999+07:00", "2026-05-07T00:00:00.001+07:00")

    # 16:59:59.999Z plus (07:08:09.250Z - 17:00:00.001Z) = 07:08:09.248Z
    assert result.timestamp == datetime(2026, 5, 6, 7, 8, 9, 248_000, tzinfo=UTC)


def test_the_original_and_sent_at_are_kept_beside_the_corrected_time():
    result = _decide("2026-05-06T07:00:00Z", "2026-05-06T07:05:00Z")

    assert result.original == datetime(2026, 5, 6, 7, 0, tzinfo=UTC)
    assert result.sent_at == datetime(2026, 5, 6, 7, 5, tzinfo=UTC)


def test_without_sent_at_the_timestamp_is_kept_as_sent():
    result = _decide("2026-05-06T07:00:00.001Z", None)

    assert result.timestamp == datetime(2026, 5, 6, 7, 0, 0, 1000, tzinfo=UTC)
    assert result.warnings == ()


def test_an_unreadable_sent_at_means_no_correction_and_a_warning():
    result = _decide("2026-05-06T07:00:00Z", "soon")

    assert result.timestamp == datetime(2026, 5, 6, 7, 0, tzinfo=UTC)
    assert any("sentAt" in warning for warning in result.warnings)


def test_without_a_timestamp_the_receipt_is_the_event_time():
    result = _decide(None, "2026-05-06T07:00:00Z")

    assert result.timestamp == RECEIVED
    assert result.original is None


def test_an_unreadable_timestamp_falls_back_to_the_receipt_with_a_warning():
    result = _decide("last tuesday", None)

    assert result.timestamp == RECEIVED
    assert any("timestamp" in warning for warning in result.warnings)


def test_a_corrected_time_far_in_the_future_falls_back_to_the_time_as_sent():
    # A sentAt from 1999 makes the correction add 27 years; the timestamp itself is fine.
    result = _decide("2026-05-06T07:00:00Z", "1999-01-01T00:00:00Z")

    assert result.timestamp == datetime(2026, 5, 6, 7, 0, tzinfo=UTC)
    assert any("implausible" in warning for warning in result.warnings)


def test_a_corrected_time_before_1990_falls_back_to_the_time_as_sent():
    result = _decide("2026-05-06T07:00:00Z", "2070-01-01T00:00:00Z")

    assert result.timestamp == datetime(2026, 5, 6, 7, 0, tzinfo=UTC)
    assert any("implausible" in warning for warning in result.warnings)


def test_a_timestamp_from_1970_without_sent_at_falls_back_to_the_receipt():
    result = _decide("1970-01-01T00:00:00Z", None)

    assert result.timestamp == RECEIVED
    assert result.original == datetime(1970, 1, 1, tzinfo=UTC)
    assert any("implausible" in warning for warning in result.warnings)


def test_a_timestamp_a_year_ahead_falls_back_to_the_receipt():
    result = _decide("2027-05-06T07:00:00Z", None)

    assert result.timestamp == RECEIVED
    assert result.warnings


def test_a_timestamp_just_inside_the_future_limit_is_kept():
    result = _decide("2026-05-07T07:08:09.250Z", None)

    assert result.timestamp == RECEIVED + timedelta(hours=24)
    assert result.warnings == ()


def test_a_timestamp_one_millisecond_past_the_future_limit_is_not_trusted():
    result = _decide("2026-05-07T07:08:09.251Z", None)

    assert result.timestamp == RECEIVED


@pytest.mark.parametrize(
    ("timestamp", "sent_at"),
    [
        ("9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z"),
        ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"),
        ("0001-01-01T00:00:00+01:00", None),
    ],
)
def test_times_at_the_edge_of_the_calendar_fall_back_instead_of_failing(timestamp, sent_at):
    result = _decide(timestamp, sent_at)

    assert result.timestamp == RECEIVED
    assert result.warnings
