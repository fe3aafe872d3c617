"""`scripts/servers`, the command the README gives for the local real servers: it starts them,
writes private settings that reach each of them, and stops them all on Ctrl-C."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import psycopg
import pytest
import redis

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(300)

EXPECTED = {
    "C360_POSTGRES_DSN",
    "C360_VALKEY_URL",
    "C360_KAFKA_BOOTSTRAP",
    "C360_MQTT_URL",
    "C360_LAKE_S3_ENDPOINT",
    "C360_LAKE_S3_ACCESS_KEY",
    "C360_LAKE_S3_SECRET_KEY",
}


def read_env_file(path: Path) -> dict[str, str]:
    """The `export NAME='value'` lines, read the way a shell would."""
    settings = {}
    for line in path.read_text().splitlines():
        words = shlex.split(line)
        assert words[0] == "export", line
        name, _, value = words[1].partition("=")
        settings[name] = value
    return settings


def listening(host_port: str) -> bool:
    host, _, port = host_port.rpartition(":")
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex((host, int(port))) == 0


def start(folder: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "servers"), "--dir", str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def wait_for_settings(process: subprocess.Popen[bytes], env_file: Path) -> dict[str, str]:
    """The settings the command writes once every server answers."""
    deadline = time.monotonic() + 240
    while not env_file.exists():
        if process.poll() is not None:
            output = process.stdout.read().decode(errors="replace") if process.stdout else ""
            if not os.environ.get("CI"):
                pytest.skip(f"the servers could not start here: {output[-1500:]}")
            pytest.fail(f"scripts/servers exited with {process.returncode}: {output[-1500:]}")
        assert time.monotonic() < deadline, "scripts/servers never wrote its settings"
        time.sleep(0.5)
    time.sleep(0.5)  # the file is written in one go; let the writer close it
    return read_env_file(env_file)


def stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGINT)
    return process.wait(120)


def addresses_of(settings: dict[str, str]) -> list[str]:
    return [
        settings["C360_KAFKA_BOOTSTRAP"],
        urllib.parse.urlsplit(settings["C360_LAKE_S3_ENDPOINT"]).netloc,
        urllib.parse.urlsplit(settings["C360_MQTT_URL"]).netloc.rpartition("@")[2],
        urllib.parse.urlsplit(settings["C360_VALKEY_URL"]).netloc.rpartition("@")[2],
    ]


def test_the_servers_command_starts_everything_writes_private_settings_and_stops_on_ctrl_c(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "servers"
    env_file = folder / "servers.env"
    first = start(folder)
    try:
        settings = wait_for_settings(first, env_file)

        assert env_file.stat().st_mode & 0o777 == 0o600
        assert set(settings) >= EXPECTED
        with psycopg.connect(settings["C360_POSTGRES_DSN"], connect_timeout=5) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        client = redis.Redis.from_url(settings["C360_VALKEY_URL"], socket_timeout=5)
        assert client.ping()
        client.close()
        for address in addresses_of(settings):
            assert address.startswith("127.0.0.1:"), address
            assert listening(address), f"nothing answers on {address}"

        # a second run on the same folder is refused, and leaves the first one's servers be
        second = subprocess.run(
            [sys.executable, str(REPO / "scripts" / "servers"), "--dir", str(folder)],
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert second.returncode == 3, second.stderr.decode(errors="replace")
        assert "--dir" in second.stderr.decode() and "Traceback" not in second.stderr.decode()
        with psycopg.connect(settings["C360_POSTGRES_DSN"], connect_timeout=5) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        code = stop(first)

    assert code == 0
    assert not any(listening(address) for address in addresses_of(settings))

    # started again, every server keeps its address and password: clients reconnect
    env_file.unlink()
    again = start(folder)
    try:
        assert wait_for_settings(again, env_file) == settings
    finally:
        assert stop(again) == 0
