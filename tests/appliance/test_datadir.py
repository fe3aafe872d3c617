"""The data folder: one c360 at a time, and private to its owner."""

from __future__ import annotations

import os
import stat

import pytest

from c360.appliance import cli, datadir
from c360.appliance.stack import Stack


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_second_lock_on_the_same_folder_is_refused_naming_the_holder(tmp_path):
    first = datadir.DataDirLock(tmp_path)
    first.acquire()
    try:
        with pytest.raises(datadir.InUse, match=f"another c360 \\(pid {os.getpid()}\\)"):
            datadir.DataDirLock(tmp_path).acquire()
    finally:
        first.release()

    again = datadir.DataDirLock(tmp_path)
    again.acquire()
    again.release()


def test_a_stack_on_a_locked_folder_stops_before_starting_anything(settings):
    datadir.create(settings.data_dir)
    holder = datadir.DataDirLock(settings.data_dir)
    holder.acquire()
    try:
        stack = Stack(settings)
        with pytest.raises(datadir.InUse, match="choose another --data-dir"):
            stack.start()
        assert stack.children == [] and stack.postgres is None and stack.valkey is None
    finally:
        holder.release()


def test_a_trial_on_a_folder_in_use_exits_at_once_with_one_line(tmp_path, capsys, quiet_logs):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    dataset = tmp_path / "cdnow.txt"
    dataset.write_text("header\r\n 00001 19970101  1   11.77\r\n")
    holder = datadir.DataDirLock(data_dir)
    holder.acquire()
    try:
        argv = ["trial", "--data-dir", str(data_dir), "--dataset", str(dataset), "--no-serve"]
        code = cli.main([*argv, "--json"])
    finally:
        holder.release()

    assert code == cli.EXIT_IN_USE
    assert capsys.readouterr().err == (
        f"c360: another c360 (pid {os.getpid()}) is using {data_dir}; stop it or choose "
        "another --data-dir\n"
    )


def test_the_data_folder_is_for_its_owner_only(tmp_path):
    data_dir = tmp_path / "new" / "data"

    datadir.create(data_dir)
    datadir.prepare(data_dir)

    assert _mode(data_dir) == 0o700
    assert _mode(data_dir.parent) == 0o700


def test_the_postgres_user_gets_only_the_search_bit_on_the_folder_and_its_parents(tmp_path):
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    os.chmod(closed, 0o700)
    opened = closed / "opened"
    opened.mkdir()
    os.chmod(opened, 0o755)
    data_dir = opened / "data"

    datadir.create(data_dir)
    datadir.prepare(data_dir, postgres_user="embedded_postgres")

    assert _mode(data_dir) == 0o701
    assert _mode(opened) == 0o755  # already allowed: left alone
    assert _mode(closed) == 0o701  # search only, never read


def test_files_an_earlier_version_left_readable_are_made_private(tmp_path):
    data_dir = tmp_path / "data"
    old_file = data_dir / "lake" / "dt=2026-03-01" / "event_type=track" / "b1.parquet"
    old_file.parent.mkdir(parents=True)
    old_file.write_bytes(b"PAR1")
    os.chmod(old_file, 0o644)
    os.chmod(old_file.parent, 0o755)
    log = data_dir / "logs" / "gateway.log"
    log.parent.mkdir()
    log.write_text("")
    os.chmod(log, 0o644)

    datadir.create(data_dir)
    datadir.prepare(data_dir)

    assert _mode(old_file) == 0o600
    assert _mode(old_file.parent) == 0o700
    assert _mode(log) == 0o600
