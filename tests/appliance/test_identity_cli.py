"""`c360 identity`: its failure path on an empty database says what to do first."""

from __future__ import annotations

from c360.appliance import datadir
from c360.appliance.cli import EXIT_FAILED, EXIT_IN_USE, main
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
