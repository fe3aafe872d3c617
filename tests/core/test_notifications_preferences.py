"""Customers' channel preferences: an SMS STOP covers every purpose and START undoes it; the
latest word wins between one purpose and all; links are signed with the setting's key, or
with one made once in the data folder (0600) when the setting is empty."""

from __future__ import annotations

import dataclasses
import stat

import pytest

from c360.errors import SettingsError
from c360.notifications import preferences

PHONE = "+84901234567"


def _allows(runtime, purpose: str, address: str = PHONE) -> bool:
    with runtime.pool.connection() as conn:
        return preferences.allows(
            conn, channel="sms", purpose=purpose, profile_id=None, address=address
        )


def test_stop_covers_every_purpose_and_start_undoes_it(runtime):
    preferences.unsubscribe(runtime, channel="sms", address=f" {PHONE} ", source="sms keyword STOP")
    assert not _allows(runtime, "marketing") and not _allows(runtime, "service")
    assert _allows(runtime, "marketing", address="+84909999999")  # another number

    preferences.resubscribe(runtime, channel="sms", address=PHONE, source="sms keyword START")
    assert _allows(runtime, "marketing") and _allows(runtime, "service")


def test_the_latest_word_wins_between_one_purpose_and_all(runtime):
    preferences.unsubscribe(
        runtime, channel="sms", address=PHONE, purpose="marketing", source="support desk"
    )
    assert not _allows(runtime, "marketing") and _allows(runtime, "service")

    preferences.resubscribe(runtime, channel="sms", address=PHONE, source="sms keyword START")
    assert _allows(runtime, "marketing")  # START after the opt-out: everything again

    preferences.unsubscribe(runtime, channel="sms", address=PHONE, source="sms keyword STOP")
    preferences.resubscribe(
        runtime, channel="sms", address=PHONE, purpose="service", source="support desk"
    )
    assert _allows(runtime, "service") and not _allows(runtime, "marketing")


def test_recording_the_same_word_twice_keeps_one_row(runtime):
    for _ in range(2):
        preferences.unsubscribe(runtime, channel="sms", address=PHONE, source="sms keyword STOP")
    with runtime.pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM notify.preferences").fetchone()[0] == 1


def test_a_preference_needs_an_address_or_a_profile(runtime):
    with pytest.raises(ValueError, match="an address or a profile"):
        preferences.unsubscribe(runtime, channel="sms", source="nobody")


def test_links_are_signed_with_a_key_made_once_in_the_data_folder(settings):
    unset = dataclasses.replace(settings, engage_secret=None)
    token = preferences.make_link_token(unset, preferences.UNSUBSCRIBE, 42)
    key_file = settings.data_dir / "engage.secret"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(key_file.read_bytes()) == 64
    assert preferences.read_link_token(unset, preferences.UNSUBSCRIBE, token) == 42

    other = dataclasses.replace(settings, engage_secret="another key")
    with pytest.raises(preferences.InvalidLink):
        preferences.read_link_token(other, preferences.UNSUBSCRIBE, token)


def test_an_empty_key_file_is_refused_with_what_to_do(settings, tmp_path):
    elsewhere = dataclasses.replace(settings, engage_secret=None, data_dir=tmp_path / "empty")
    elsewhere.data_dir.mkdir()
    (elsewhere.data_dir / "engage.secret").write_bytes(b"")
    with pytest.raises(SettingsError, match="delete it, or set C360_ENGAGE_SECRET"):
        preferences.engage_secret(elsewhere)
