"""`c360 knowledge load / search / reembed` on the configured database: the demo catalogue
loads with progress, searching finds it, a second load embeds nothing, and a bad file fails
with the file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from c360.appliance.cli import EXIT_OK, EXIT_USAGE, main

DEMO = Path(__file__).resolve().parents[2] / "core" / "knowledge" / "data" / "demo_catalogue.json"


@pytest.fixture
def cli(runtime, monkeypatch, quiet_logs):
    monkeypatch.setenv("C360_POSTGRES_DSN", runtime.settings.postgres_dsn)
    monkeypatch.setenv("C360_DATA_DIR", str(runtime.settings.data_dir))
    return main


@pytest.fixture
def quiet_logs():
    """Put the root logger and umask back after running `c360` in this process."""
    import logging
    import os

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    umask = os.umask(0o022)
    os.umask(umask)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    os.umask(umask)


def test_the_demo_catalogue_loads_searches_and_loads_again_without_embedding(cli, capsys):
    assert cli(["knowledge", "load", str(DEMO)]) == EXIT_OK
    out, err = capsys.readouterr()
    assert json.loads(out) == {"inserted": 24, "updated": 0, "unchanged": 0, "embedded": 24}
    assert "embedded and stored 24 of 24 items" in err

    assert cli(["knowledge", "search", "WELCOME10", "--type", "promotion", "-k", "1"]) == EXIT_OK
    (hit,) = json.loads(capsys.readouterr().out)["hits"]
    assert hit["id"] == "promotion:WELCOME10"  # named as the API names it
    assert "item_id" not in hit
    assert hit["attributes"]["code"] == "WELCOME10"

    assert cli(["knowledge", "load", str(DEMO)]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["embedded"] == 0
    assert cli(["knowledge", "reembed"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out) == {"reembedded": 24}


def test_a_bad_file_fails_naming_the_file_line_and_field(cli, capsys, tmp_path):
    path = tmp_path / "shop.csv"
    path.write_text("id,title,stock\nproduct:1,Tea,3\nproduct:2,Cake,many\n", encoding="utf-8")

    assert cli(["knowledge", "load", str(path), "--type", "product"]) == EXIT_USAGE
    assert "shop.csv, line 3: field 'stock' 'many' must be a whole number" in (
        capsys.readouterr().err
    )
    assert cli(["knowledge", "load", str(tmp_path / "none.csv")]) == EXIT_USAGE
    assert "none.csv: no such file" in capsys.readouterr().err


def test_a_folder_without_c360_data_is_a_usage_error(capsys, tmp_path, monkeypatch, quiet_logs):
    monkeypatch.delenv("C360_POSTGRES_DSN", raising=False)
    missing = tmp_path / "typo"

    assert main(["--data-dir", str(missing), "knowledge", "search", "tea"]) == EXIT_USAGE
    assert "no c360 data in" in capsys.readouterr().err
    assert not (missing / "postgres").exists()


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        (
            "nul.csv",
            b"id,title,price\nNULCSV,a\x00b,1\n",
            "nul.csv, line 2: field 'title' contains",
        ),
        (
            "nul.json",
            b'[{"id": "N", "type": "product", "title": "a\\u0000b"}]',
            "nul.json, line 1: field 'title' contains a NUL character",
        ),
        ("empty.csv", b"id,title,price\n", "empty.csv: the file has no items"),
        ("twice.csv", b"id,title\nT-011,A\nT-011,B\n", "line 3: id T-011 is also at line 2"),
        ("big.csv", b"id,title,price\nT-005,Test cake,1e309\n", "field 'price' '1e309' must be"),
    ],
)
def test_a_refused_file_is_one_line_and_exit_status_2(cli, capsys, tmp_path, name, content, says):
    path = tmp_path / name
    path.write_bytes(content)

    assert cli(["knowledge", "load", str(path), "--type", "product"]) == EXIT_USAGE

    err = capsys.readouterr().err
    assert says in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert cli(["knowledge", "search", "cake", "-k", "1"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out) == {"hits": []}  # nothing was stored


def test_a_k_out_of_range_says_the_range(cli, capsys):
    assert cli(["knowledge", "search", "tea", "-k", "-1"]) == EXIT_USAGE
    assert capsys.readouterr().err.strip() == "c360: k must be between 1 and 100"
