"""Settings of the raw lake: the S3 bucket, its keys, encryption and retention. A bad value is
a SettingsError that names the C360_* variable to fix; the secret key is never shown."""

from __future__ import annotations

import pytest

from c360.errors import SettingsError
from c360.settings import load_settings, to_environment

S3 = {
    "lake_s3_endpoint": "http://127.0.0.1:9000",
    "lake_s3_access_key": "c360",
    "lake_s3_secret_key": "s3cret-key-value",
}


def test_by_default_the_lake_stays_in_the_data_folder():
    settings = load_settings({}, environ={})

    assert settings.lake_s3_endpoint is None
    assert settings.lake_s3_bucket == "c360-lake"
    assert (settings.lake_sse, settings.lake_retention_days) == (False, None)


def test_the_s3_lake_is_read_from_the_environment():
    settings = load_settings(
        {},
        environ={
            "C360_LAKE_S3_ENDPOINT": "https://s3.example.vn",
            "C360_LAKE_S3_BUCKET": "acme.lake-1",
            "C360_LAKE_S3_ACCESS_KEY": "c360",
            "C360_LAKE_S3_SECRET_KEY": "s3cret-key-value",
            "C360_LAKE_S3_REGION": "ap-southeast-1",
            "C360_LAKE_SSE": "true",
            "C360_LAKE_RETENTION_DAYS": "400",
        },
    )

    assert settings.lake_s3_endpoint == "https://s3.example.vn"
    assert (settings.lake_s3_bucket, settings.lake_s3_region) == ("acme.lake-1", "ap-southeast-1")
    assert (settings.lake_sse, settings.lake_retention_days) == (True, 400)


@pytest.mark.parametrize(
    ("text", "value"), [("yes", True), ("On", True), ("0", False), ("", False)]
)
def test_sse_is_a_yes_or_no(text, value):
    assert load_settings(S3, environ={"C360_LAKE_SSE": text}).lake_sse is value


def test_an_empty_retention_keeps_lake_objects_for_good():
    assert load_settings(S3, environ={"C360_LAKE_RETENTION_DAYS": ""}).lake_retention_days is None


def test_the_s3_lake_settings_survive_the_trip_through_the_environment():
    original = load_settings({**S3, "lake_sse": True, "lake_retention_days": 30}, environ={})

    assert load_settings({}, environ=to_environment(original)) == original


def test_the_secret_key_is_masked_and_the_access_key_shown():
    shown = load_settings(S3, environ={}).redacted()

    assert shown["lake_s3_secret_key"] == "***"
    assert shown["lake_s3_access_key"] == "c360"
    assert "s3cret-key-value" not in repr(shown)


@pytest.mark.parametrize(
    "endpoint",
    [
        "127.0.0.1:9000",
        "s3://127.0.0.1:9000",
        "http://127.0.0.1:9000/c360-lake",
        "http://127.0.0.1:99999",
        "http://",
        "http://c360:s3cret-in-url@127.0.0.1:9000",
    ],
)
def test_an_endpoint_that_is_not_a_plain_http_url_is_refused_naming_the_setting(endpoint):
    with pytest.raises(SettingsError, match="C360_LAKE_S3_ENDPOINT") as caught:
        load_settings({**S3, "lake_s3_endpoint": endpoint}, environ={})

    assert "s3cret-in-url" not in str(caught.value)


@pytest.mark.parametrize("missing", ["lake_s3_access_key", "lake_s3_secret_key"])
def test_an_s3_lake_without_its_keys_is_refused_naming_both(missing):
    with pytest.raises(SettingsError, match="C360_LAKE_S3_ACCESS_KEY and C360_LAKE_S3_SECRET_KEY"):
        load_settings({**S3, missing: ""}, environ={})


@pytest.mark.parametrize(
    "bucket", ["ab", "C360-Lake", "c360_lake", "-c360", "c360..lake", "192.168.1.10", "a" * 64]
)
def test_a_bucket_name_s3_would_refuse_is_refused_naming_the_setting(bucket):
    with pytest.raises(SettingsError, match="C360_LAKE_S3_BUCKET"):
        load_settings({**S3, "lake_s3_bucket": bucket}, environ={})


def test_a_region_that_is_not_a_name_is_refused_naming_the_setting():
    with pytest.raises(SettingsError, match="C360_LAKE_S3_REGION"):
        load_settings({**S3, "lake_s3_region": "us east/1"}, environ={})


@pytest.mark.parametrize("days", ["0", "-5"])
def test_a_retention_under_a_day_is_refused_naming_the_setting(days):
    with pytest.raises(SettingsError, match="C360_LAKE_RETENTION_DAYS"):
        load_settings(S3, environ={"C360_LAKE_RETENTION_DAYS": days})


@pytest.mark.parametrize(("name", "value"), [("lake_sse", "maybe"), ("lake_retention_days", "a")])
def test_values_that_are_not_a_yes_or_no_or_a_number_are_refused_naming_the_setting(name, value):
    with pytest.raises(SettingsError, match=name):
        load_settings(S3, environ={f"C360_{name.upper()}": value})


@pytest.mark.parametrize("asked", [{"lake_sse": True}, {"lake_retention_days": 30}])
def test_encryption_or_retention_without_an_s3_lake_is_refused_rather_than_ignored(asked):
    with pytest.raises(SettingsError, match=r"S3 lake only.*C360_LAKE_S3_ENDPOINT"):
        load_settings(asked, environ={})
