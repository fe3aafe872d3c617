"""`c360 identity`: its failure paths say what to change; it works beside a running appliance
and refreshes that appliance's profile cache."""

from __future__ import annotations

import uuid

from c360.appliance import datadir
from c360.appliance.cli import (
    EXIT_FAILED,
    EXIT_IN_USE,
    EXIT_USAGE,
    _refresh_cached_profiles,
    main,
)
from c360.appliance.engines import EmbeddedPostgres


def test_dedupe_without_a_model_says_to_train_first(runtime, capsys, monkeypatch) -> None:
    monkeypatch.setenv("C360_POSTGRES_DSN", runtime.settings.postgres_dsn)
    monkeypatch.setenv("C360_DATA_DIR", str(runtime.settings.data_dir))
    assert main(["identity", "dedupe"]) == EXIT_FAILED
    assert "run `c360 identity train` first" in capsys.readouterr().err
    assert main(["identity", "train"]) == EXIT_FAILED
    assert "too few profiles" in capsys.readouterr().err


def test_identity_works_beside_a_running_appliance_on_the_same_folder(
    tmp_path, capsys, monkeypatch
) -> None:
    # the folder is locked by a "running c360" (this test holds the lock and the server)
    data_dir = tmp_path / "data"
    datadir.create(data_dir)
    lock = datadir.DataDirLock(data_dir)
    lock.acquire()
    postgres = EmbeddedPostgres(data_dir)
    postgres.start()
    try:
        monkeypatch.delenv("C360_POSTGRES_DSN", raising=False)
        code = main(["--data-dir", str(data_dir), "identity", "train"])
        assert code == EXIT_FAILED  # reached the running database, which has no profiles
        assert "too few profiles" in capsys.readouterr().err
        # a command that needs the folder for itself still refuses
        assert main(["--data-dir", str(data_dir), "migrate"]) == EXIT_IN_USE
    finally:
        postgres.stop()
        lock.release()


def test_a_data_folder_that_does_not_exist_is_a_usage_error(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("C360_POSTGRES_DSN", raising=False)
    missing = tmp_path / "typo" / "c360"
    assert main(["--data-dir", str(missing), "identity", "dedupe"]) == EXIT_USAGE
    assert "no c360 data in" in capsys.readouterr().err
    assert not missing.exists()  # nothing was created in the mistyped place


def test_apply_goes_with_dedupe_only(runtime, capsys, monkeypatch):
    monkeypatch.setenv("C360_POSTGRES_DSN", runtime.settings.postgres_dsn)
    assert main(["identity", "train", "--apply"]) == EXIT_USAGE
    assert "--apply goes with `c360 identity dedupe` only" in capsys.readouterr().err


def test_merged_profiles_are_refreshed_in_a_running_cache(runtime):
    profile_id = uuid.uuid4()
    with runtime.pool.connection() as conn:
        conn.execute("INSERT INTO profiles (profile_id, event_count) VALUES (%s, 7)", (profile_id,))
    stale = {"profile_id": str(profile_id), "event_count": 1}
    runtime.cache.put([stale])
    note = _refresh_cached_profiles(runtime.settings, runtime.settings.postgres_dsn, [profile_id])
    assert note == "refreshed 1 profiles"
    assert runtime.cache.get(str(profile_id))["event_count"] == 7
