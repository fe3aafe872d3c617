"""`c360 identity`: its failure path on an empty database says what to do first."""

from __future__ import annotations

from c360.appliance.cli import EXIT_FAILED, main


def test_dedupe_without_a_model_says_to_train_first(runtime, capsys, monkeypatch) -> None:
    monkeypatch.setenv("C360_POSTGRES_DSN", runtime.settings.postgres_dsn)
    monkeypatch.setenv("C360_DATA_DIR", str(runtime.settings.data_dir))
    assert main(["identity", "dedupe"]) == EXIT_FAILED
    assert "run `c360 identity train` first" in capsys.readouterr().err
    assert main(["identity", "train"]) == EXIT_FAILED
    assert "too few profiles" in capsys.readouterr().err
