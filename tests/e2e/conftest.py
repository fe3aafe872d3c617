"""Helpers for the end-to-end tests: the CDNOW file, its numbers by a plain parse, and the `c360`
command run as a subprocess on a temporary data folder and a free port.

Expected numbers never come from c360 code: `plain_numbers` reads the file with `str.split`
and `Decimal`, nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import psutil
import pytest

from c360.appliance.engines import EmbeddedValkey
from c360.connectors import cdnow

REPO = Path(__file__).resolve().parents[2]

# the fault scenario lives in bench/ beside its script (bench/faults.py); import it from there
BENCH = REPO / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

#: Longest a `c360 trial` may take on a slice before the test gives up on it.
TRIAL_TIMEOUT_S = 300

#: Longest the processes of a stopped trial may take to exit.
EXIT_TIMEOUT_S = 30


@dataclass(frozen=True)
class PlainNumbers:
    """What the first `limit` lines of CDNOW_master.txt add up to, by a plain parse."""

    lines: int
    orders_by_customer: dict[str, int]
    revenue_by_customer: dict[str, Decimal]

    @property
    def customers(self) -> int:
        """Distinct customers in the slice."""
        return len(self.orders_by_customer)

    @property
    def revenue(self) -> Decimal:
        """Exact sum of the dollar column."""
        return sum(self.revenue_by_customer.values(), Decimal(0))


def plain_numbers(path: Path, limit: int) -> PlainNumbers:
    """Count lines and sum dollars per customer over the first `limit` purchase lines."""
    orders: dict[str, int] = {}
    revenue: dict[str, Decimal] = {}
    lines = 0
    with path.open(encoding="ascii") as handle:
        next(handle)  # header
        for raw in handle:
            if lines == limit:
                break
            fields = raw.split()
            if not fields:
                continue
            customer, _day, _cds, dollars = fields
            lines += 1
            orders[customer] = orders.get(customer, 0) + 1
            revenue[customer] = revenue.get(customer, Decimal(0)) + Decimal(dollars)
    return PlainNumbers(lines, orders, revenue)


@pytest.fixture(scope="session")
def cdnow_file() -> Path:
    """CDNOW_master.txt, fetched once into the repository's (gitignored) fixtures folder."""
    return cdnow.fetch(REPO / "fixtures" / "cdnow")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def c360_command() -> list[str]:
    """The `c360` console script of the interpreter running the tests."""
    script = Path(sys.executable).with_name("c360")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "c360.appliance.cli"]


def trial_command(data_dir: Path, dataset: Path, limit: int, serve: bool) -> list[str]:
    """`c360 trial --json` on a slice, a data folder and a fresh port."""
    command = [
        *c360_command(),
        "trial",
        "--data-dir",
        str(data_dir),
        "--dataset",
        str(dataset),
        "--limit",
        str(limit),
        "--port",
        str(free_port()),
        "--json",
    ]
    return command if serve else [*command, "--no-serve"]


def clean_environment() -> dict[str, str]:
    """This environment without C360_* settings, so only the command line configures c360."""
    return {key: value for key, value in os.environ.items() if not key.startswith("C360_")}


def decode_summary(line: str | bytes) -> dict[str, Any]:
    """The trial's JSON summary with fractional numbers as exact Decimals."""
    return json.loads(line, parse_float=Decimal)


def run_trial(data_dir: Path, dataset: Path, limit: int) -> dict[str, Any]:
    """Run `c360 trial --json --no-serve` to completion and return its summary."""
    done = subprocess.run(
        trial_command(data_dir, dataset, limit, serve=False),
        capture_output=True,
        env=clean_environment(),
        timeout=TRIAL_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, (
        f"c360 trial exited with {done.returncode}: {done.stderr.decode(errors='replace')[-2000:]}"
        f"{logs_tail(data_dir)}"
    )
    lines = done.stdout.decode().strip().splitlines()
    assert len(lines) == 1, f"expected one JSON line on stdout, got: {done.stdout[-2000:]!r}"
    return decode_summary(lines[0])


def logs_tail(data_dir: Path, chars: int = 1500) -> str:
    """The end of every log in the data folder, for assertion messages."""
    parts = []
    for log in sorted((data_dir / "logs").glob("*.log")):
        parts.append(f"\n--- {log.name} ---\n{log.read_text(errors='replace')[-chars:]}")
    return "".join(parts)


def is_gone(process: psutil.Process) -> bool:
    """True once a process has exited (a zombie waiting for its reaper counts as exited)."""
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_until_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until every process has exited; returns those still running at the deadline."""
    deadline = time.monotonic() + timeout
    alive = [p for p in processes if not is_gone(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [p for p in alive if not is_gone(p)]
    return alive


def describe(processes: list[psutil.Process]) -> list[str]:
    """pid and command line of each process, for assertion messages."""
    described = []
    for process in processes:
        try:
            described.append(f"{process.pid}: {' '.join(process.cmdline())[:160]}")
        except psutil.Error:
            described.append(f"{process.pid}: (gone)")
    return described


def descendants(pid: int) -> list[psutil.Process]:
    """Every process below `pid` right now."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def role_of(process: psutil.Process) -> str | None:
    """Which part of the stack a trial's child process is, from its command line."""
    try:
        command = " ".join(process.cmdline())
    except psutil.Error:
        return None
    for role, marker in (
        ("gateway", "c360.appliance.cli gateway"),
        ("worker", "c360.appliance.cli worker"),
        ("valkey", "valkey-server"),
        ("postgres", "bin/postgres"),
    ):
        if marker in command:
            return role
    return None


def valkey_socket(data_dir: Path) -> Path:
    """The unix socket of the embedded Valkey that c360 runs for this data folder."""
    return EmbeddedValkey(data_dir).socket


@dataclass
class Launched:
    """A `c360` process started by a test, with what it was started on."""

    process: subprocess.Popen[bytes]
    data_dir: Path
    stderr_path: Path
    lines: queue.Queue[bytes] = field(default_factory=queue.Queue)
    known: list[psutil.Process] = field(default_factory=list)

    def capture_children(self) -> list[psutil.Process]:
        """Every process below this one right now; remembered, so that whatever of them is
        still running at the end of the module is killed even after it lost its parent."""
        found = descendants(self.process.pid)
        self.known.extend(found)
        return found

    def read_line(self, timeout: float) -> bytes:
        """The next line of stdout; fails if none comes in time or the process exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                return self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
        raise AssertionError(
            f"no line from c360 (exit code {self.process.poll()}): "
            f"{self.stderr_path.read_text(errors='replace')[-2000:]}{logs_tail(self.data_dir)}"
        )


@pytest.fixture(scope="module")
def launch() -> Iterator[Any]:
    """Start `c360` processes in the background; whatever is still running at the end of the
    module is stopped (SIGTERM, then SIGKILL for it and the children it left)."""
    started: list[Launched] = []

    def start(command: list[str], data_dir: Path) -> Launched:
        data_dir.mkdir(parents=True, exist_ok=True)
        stderr_path = data_dir.parent / f"{data_dir.name}-stderr-{len(started)}.txt"
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=stderr, env=clean_environment()
            )
        launched = Launched(process, data_dir, stderr_path)
        threading.Thread(target=_pump_lines, args=(launched,), daemon=True).start()
        started.append(launched)
        return launched

    yield start

    for launched in started:
        _stop(launched)


def _pump_lines(launched: Launched) -> None:
    assert launched.process.stdout is not None
    for line in launched.process.stdout:
        launched.lines.put(line)


def _stop(launched: Launched) -> None:
    process = launched.process
    left = [*launched.known, *descendants(process.pid)]
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(EXIT_TIMEOUT_S)
    for child in wait_until_gone(left, EXIT_TIMEOUT_S):
        with contextlib.suppress(psutil.Error):
            child.kill()
    if process.stdout is not None:
        process.stdout.close()
    remove_socket_dir(launched.data_dir)


def remove_socket_dir(data_dir: Path) -> None:
    """c360 keeps the Valkey socket in a short folder under /tmp; tidy it after a test."""
    shutil.rmtree(valkey_socket(data_dir).parent, ignore_errors=True)
