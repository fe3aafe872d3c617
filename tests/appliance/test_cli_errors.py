"""Mistakes a user can make on the command line end in one line that says what to do, and a
named exit code; never a traceback."""

from __future__ import annotations

import json
import socket

import pytest

from c360 import migrate
from c360.appliance import cli

GOOD_LINE = " 00001 19970101  1   11.77\r\n"


@pytest.fixture
def dataset(tmp_path):
    path = tmp_path / "cdnow.txt"
    path.write_text("customer date cds dollars\r\n" + GOOD_LINE)
    return path


def _trial(tmp_path, *extra: str) -> int:
    return cli.main(["trial", "--data-dir", str(tmp_path / "data"), "--no-serve", *extra])


def _one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("c360: ")
    return lines[0]


def test_migrate_down_without_yes_says_what_it_would_drop(tmp_path, capsys, quiet_logs):
    code = cli.main(["migrate", "--data-dir", str(tmp_path / "data"), "--down", "0"])

    line = _one_line(capsys.readouterr().err)
    assert code == cli.EXIT_USAGE
    assert "events" in line and "profiles" in line and "lake_index" in line
    assert "--yes" in line
    assert not (tmp_path / "data" / "postgres").exists()  # nothing was started


@pytest.mark.parametrize("limit", ["0", "-5"])
def test_a_limit_below_one_is_refused(tmp_path, dataset, capsys, quiet_logs, limit):
    code = _trial(tmp_path, "--dataset", str(dataset), "--limit", limit)

    assert code == cli.EXIT_USAGE
    assert "limit must be at least 1" in _one_line(capsys.readouterr().err)


def test_a_dataset_that_does_not_exist_is_named(tmp_path, capsys, quiet_logs):
    missing = tmp_path / "nonexistent"

    code = _trial(tmp_path, "--dataset", str(missing))

    assert code == cli.EXIT_USAGE
    line = _one_line(capsys.readouterr().err)
    assert str(missing) in line and "--dataset" in line


def test_a_malformed_dataset_line_is_named_by_number(tmp_path, capsys, quiet_logs):
    path = tmp_path / "bad.txt"
    path.write_text("header\r\n" + GOOD_LINE + " 00002 1997-01-01 one 3.00\r\n")

    code = _trial(tmp_path, "--dataset", str(path))

    assert code == cli.EXIT_FAILED
    line = _one_line(capsys.readouterr().err)
    assert f"line 3 of {path}" in line and "fix or remove that line" in line


def test_a_data_folder_that_cannot_be_written_is_named(tmp_path, dataset, capsys, quiet_logs):
    # /sys refuses new folders even to root (EPERM), as a read-only mount does
    code = cli.main(["trial", "--data-dir", "/sys/c360-test", "--dataset", str(dataset)])

    assert code == cli.EXIT_FAILED
    line = _one_line(capsys.readouterr().err)
    assert "/sys/c360-test" in line and "--data-dir" in line


def test_any_other_os_error_names_the_path(tmp_path, capsys, quiet_logs):
    (tmp_path / "c360.toml").mkdir()  # a folder where a file is expected: IsADirectoryError

    code = cli.main(["--config", str(tmp_path / "c360.toml"), "settings"])

    assert code == cli.EXIT_FAILED
    assert str(tmp_path / "c360.toml") in _one_line(capsys.readouterr().err)


def test_a_port_in_use_is_reported_alone_on_stderr_with_json(tmp_path, dataset, capsys, quiet_logs):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        code = _trial(tmp_path, "--dataset", str(dataset), "--port", str(port), "--json")

    captured = capsys.readouterr()
    assert code == cli.EXIT_IN_USE
    assert captured.err == (
        f"c360: port {port} on 127.0.0.1 is in use; choose another with --port\n"
    )
    assert captured.out == ""


def test_settings_show_each_source_with_its_key_masked(tmp_path, capsys, quiet_logs, monkeypatch):
    monkeypatch.setenv("C360_WRITE_KEYS", "webkey-secret-1:web,ioskey-secret-2:ios")

    code = cli.main(["settings", "--data-dir", str(tmp_path)])

    shown = json.loads(capsys.readouterr().out)
    assert code == cli.EXIT_OK
    assert shown["write_keys"] == ["webk…:web", "iosk…:ios"]


def test_up_without_an_api_token_warns_that_the_api_refuses_everything(
    tmp_path, capsys, quiet_logs, monkeypatch
):
    monkeypatch.setenv("C360_WRITE_KEYS", "webkey-secret-1:web")
    monkeypatch.delenv("C360_API_TOKENS", raising=False)
    with socket.socket() as taken:  # so `up` stops right after the warning
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        code = cli.main(["up", "--data-dir", str(tmp_path / "data"), "--port", str(port)])

    err = capsys.readouterr().err
    assert code == cli.EXIT_IN_USE
    assert "profile API will refuse every request until C360_API_TOKENS is set" in err


@pytest.mark.parametrize("version", ["-1", str(migrate.available()[-1].version + 1)])
def test_a_roll_back_to_a_version_that_cannot_exist_is_refused(
    tmp_path, capsys, quiet_logs, version
):
    code = cli.main(["migrate", "--data-dir", str(tmp_path / "data"), "--down", version, "--yes"])

    assert code == cli.EXIT_USAGE
    assert "from 0 to" in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "data" / "postgres").exists()  # nothing was started


def test_trial_on_servers_without_their_settings_says_how_to_start_them(capsys, monkeypatch):
    monkeypatch.delenv("C360_POSTGRES_DSN", raising=False)
    monkeypatch.delenv("C360_VALKEY_URL", raising=False)
    assert cli.main(["trial", "--stack", "servers", "--no-serve"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "C360_POSTGRES_DSN, C360_VALKEY_URL" in err and "scripts/servers" in err


def test_trial_with_server_settings_must_say_stack_servers(capsys, monkeypatch):
    monkeypatch.setenv("C360_VALKEY_URL", "redis://127.0.0.1:1/0")
    assert cli.main(["trial", "--no-serve"]) == cli.EXIT_USAGE
    assert "say so with --stack servers" in capsys.readouterr().err


@pytest.mark.parametrize("services", ["gateway", "workers"])
def test_scaling_out_without_shared_servers_is_refused(
    tmp_path, capsys, quiet_logs, monkeypatch, services
):
    monkeypatch.setenv("C360_WRITE_KEYS", "scale-key-1:web")
    monkeypatch.delenv("C360_POSTGRES_DSN", raising=False)
    monkeypatch.delenv("C360_VALKEY_URL", raising=False)

    code = cli.main(["up", "--data-dir", str(tmp_path / "data"), "--services", services])

    assert code == cli.EXIT_USAGE
    line = _one_line(capsys.readouterr().err)
    assert "C360_POSTGRES_DSN" in line and "C360_VALKEY_URL" in line
    assert not (tmp_path / "data" / "postgres").exists()  # nothing was started


@pytest.mark.parametrize("workers", ["0", "65"])
def test_a_worker_count_out_of_range_is_refused(tmp_path, capsys, quiet_logs, monkeypatch, workers):
    monkeypatch.setenv("C360_WRITE_KEYS", "scale-key-1:web")

    code = cli.main(["up", "--data-dir", str(tmp_path / "data"), "--workers", workers])

    assert code == cli.EXIT_USAGE
    assert "--workers takes 1 to 64" in _one_line(capsys.readouterr().err)


@pytest.mark.parametrize("name", ["", "box a", "-box", "b" * 254, "box/1"])
def test_an_instance_name_that_cannot_name_a_consumer_is_refused(
    tmp_path, capsys, quiet_logs, monkeypatch, name
):
    monkeypatch.setenv("C360_INSTANCE_NAME", name)

    code = cli.main(["settings", "--data-dir", str(tmp_path / "data")])

    assert code != 0
    line = _one_line(capsys.readouterr().err)
    assert "C360_INSTANCE_NAME" in line


def test_a_postgres_that_cannot_be_reached_is_named_with_its_password_masked(
    tmp_path, capsys, quiet_logs, monkeypatch
):
    from c360.appliance.engines import free_port

    monkeypatch.setenv("C360_WRITE_KEYS", "scale-key-1:web")
    monkeypatch.setenv("C360_API_TOKENS", "a-token")
    monkeypatch.setenv("C360_POSTGRES_DSN", f"postgresql://c360:s3cret@127.0.0.1:{free_port()}/c")
    monkeypatch.setenv("C360_VALKEY_URL", f"redis://127.0.0.1:{free_port()}/0")

    code = cli.main(["up", "--data-dir", str(tmp_path / "data"), "--port", str(free_port())])

    line = _one_line(capsys.readouterr().err)
    assert code != 0
    assert "C360_POSTGRES_DSN" in line and "s3cret" not in line and "***" in line


@pytest.mark.parametrize("url", ["127.0.0.1:6379", "valkey://127.0.0.1:6379", "http://x:1"])
def test_a_valkey_url_without_a_scheme_redis_reads_is_refused(
    tmp_path, capsys, quiet_logs, monkeypatch, url
):
    monkeypatch.setenv("C360_VALKEY_URL", url)

    code = cli.main(["settings", "--data-dir", str(tmp_path / "data")])

    assert code == cli.EXIT_USAGE
    assert "C360_VALKEY_URL" in _one_line(capsys.readouterr().err)
