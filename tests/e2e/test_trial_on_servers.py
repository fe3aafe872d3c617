"""`c360 trial --stack servers` on real local servers (Valkey over TCP with a password,
PostgreSQL on TCP, started by the project's own `c360.appliance.servers`): the whole CDNOW
replay ends with the same numbers as the plain sums of the file, as on the embedded engines."""

from __future__ import annotations

import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

from c360.appliance.servers import LocalServers

from .conftest import (
    TRIAL_TIMEOUT_S,
    c360_command,
    clean_environment,
    decode_summary,
    free_port,
    plain_numbers,
)

pytestmark = pytest.mark.e2e

WHOLE_FILE = 1_000_000  # more lines than CDNOW has: the trial replays all of it


def test_the_whole_trial_on_real_servers_gives_the_files_numbers(
    cdnow_file: Path, tmp_path: Path
) -> None:
    expected = plain_numbers(cdnow_file, WHOLE_FILE)
    servers = LocalServers(tmp_path / "servers")
    servers.start()
    try:
        done = subprocess.run(
            [
                *c360_command(), "trial", "--stack", "servers", "--json", "--no-serve",
                "--data-dir", str(tmp_path / "data"), "--dataset", str(cdnow_file),
                "--port", str(free_port()),
            ],
            capture_output=True,
            env={**clean_environment(), **servers.environment()},
            timeout=TRIAL_TIMEOUT_S,
            check=False,
        )  # fmt: skip
    finally:
        servers.stop()
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    summary = decode_summary(done.stdout.splitlines()[-1])
    assert summary["events_accepted"] == summary["events_stored"] == expected.lines
    assert summary["events_in_lake"] == expected.lines
    assert summary["events_rejected"] == 0
    assert summary["profiles"] == expected.customers
    assert Decimal(summary["revenue_total"]) == expected.revenue
