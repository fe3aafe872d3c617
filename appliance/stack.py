"""The embedded stack: engines, schema, then the gateway and worker processes, all children of
the `c360` process and stopped with it."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import psycopg

from c360 import migrate
from c360.appliance.engines import EmbeddedPostgres, EmbeddedValkey, die_with_parent
from c360.errors import EngineError
from c360.settings import Settings, to_environment

log = logging.getLogger(__name__)


class Stack:
    """Everything `c360 trial` and `c360 up` run, started in order and stopped in reverse."""

    def __init__(self, settings: Settings, workers: int = 1) -> None:
        self.settings = settings
        self.workers = workers
        self.postgres: EmbeddedPostgres | None = None
        self.valkey: EmbeddedValkey | None = None
        self.children: list[subprocess.Popen[bytes]] = []
        self._commands: dict[int, tuple[list[str], str]] = {}

    def start(self) -> Settings:
        """Start engines (unless servers are configured), migrate, start services."""
        data_dir = self.settings.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        changes = {}
        if not self.settings.postgres_dsn:
            self.postgres = EmbeddedPostgres(data_dir)
            self.postgres.start()
            changes["postgres_dsn"] = self.postgres.dsn
        if not self.settings.valkey_url:
            self.valkey = EmbeddedValkey(data_dir)
            self.valkey.start()
            changes["valkey_url"] = self.valkey.url
        self.settings = dataclasses.replace(self.settings, **changes)
        with psycopg.connect(self.settings.postgres_dsn, autocommit=True) as conn:
            migrate.upgrade(conn)
        for index in range(self.workers):
            self._spawn(["worker", "--index", str(index)], f"worker-{index}")
        self._spawn(["gateway"], "gateway")
        self._wait_for_gateway()
        return self.settings

    def supervise(self, stop: threading.Event) -> None:
        """Until `stop` is set, restart any service process that exits, with growing pauses
        (1 s doubling to a minute) so a process that cannot start does not spin."""
        pauses: dict[str, float] = {}
        while not stop.wait(1.0):
            for position, child in enumerate(self.children):
                code = child.poll()
                if code is None:
                    continue
                args, name = self._commands[child.pid]
                pause = pauses.get(name, 0.5) * 2
                pauses[name] = min(pause, 60.0)
                log.error(
                    "The %s process (pid %d) exited with code %s; restarting it in %.0f s.",
                    name,
                    child.pid,
                    code,
                    pause,
                )
                if stop.wait(pause):
                    return
                self.children[position] = self._launch(args, name)

    def stop(self) -> None:
        """Stop services, then engines."""
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self.children:
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()
        if self.valkey:
            self.valkey.stop()
        if self.postgres:
            self.postgres.stop()

    def check_alive(self) -> None:
        """Raise EngineError if a service process has exited (nothing restarts it)."""
        for child in self.children:
            code = child.poll()
            if code is not None:
                raise EngineError(
                    f"the c360 {child.args[3]} process (pid {child.pid}) exited with code "
                    f"{code}; see the logs in {self.settings.data_dir / 'logs'}"
                )

    @property
    def url(self) -> str:
        """Base URL of the gateway and API."""
        return f"http://{self.settings.host}:{self.settings.port}"

    def _spawn(self, args: list[str], name: str) -> None:
        self.children.append(self._launch(args, name))

    def _launch(self, args: list[str], name: str) -> subprocess.Popen[bytes]:
        """Start one service process, after stopping what an earlier run left of it."""
        run_dir = Path(self.settings.data_dir) / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        pid_file = run_dir / f"{name}.pid"
        stop_leftover_service(pid_file)
        env = {**os.environ, **settings_environment(self.settings)}
        log_path = Path(self.settings.data_dir) / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log_file:
            child = subprocess.Popen(
                [sys.executable, "-m", "c360.appliance.cli", *args],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                preexec_fn=lambda: die_with_parent(signal.SIGTERM),
            )
        pid_file.write_text(str(child.pid))
        self._commands[child.pid] = (args, name)
        return child

    def _wait_for_gateway(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for child in self.children:
                if child.poll() is not None:
                    raise EngineError(
                        f"a c360 process exited at start-up; see {self.settings.data_dir / 'logs'}"
                    )
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise EngineError(f"the gateway did not answer on {self.url} within {timeout:.0f} s")


def stop_leftover_service(pid_file: Path, timeout: float = 15.0) -> None:
    """Stop a c360 service process an earlier run on this data folder left behind (a killed
    parent's children get SIGTERM, but one stuck on a dead engine may not exit)."""
    try:
        process = psutil.Process(int(pid_file.read_text().strip()))
        if "c360.appliance.cli" not in " ".join(process.cmdline()):
            return
    except (FileNotFoundError, ValueError, psutil.NoSuchProcess, psutil.AccessDenied):
        return
    log.warning("Stopping a c360 process (pid %d) left by an earlier run.", process.pid)
    process.terminate()
    try:
        process.wait(timeout)
    except psutil.TimeoutExpired:
        process.kill()
        process.wait(5)


def settings_environment(settings: Settings) -> dict[str, str]:
    """Settings as C360_* variables, so child processes start with exactly these settings."""
    return to_environment(settings)
