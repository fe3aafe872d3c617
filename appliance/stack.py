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
from typing import IO

import httpx
import psutil
import psycopg
import redis

from c360 import migrate
from c360.adapters.cache_valkey import ValkeyProfileCache
from c360.appliance import datadir
from c360.appliance.engines import (
    EmbeddedPostgres,
    EmbeddedValkey,
    die_with_parent,
    port_is_free,
    stop_leftover,
)
from c360.errors import AdapterError, EngineError
from c360.runtime import Runtime
from c360.settings import Settings, mask_password, to_environment
from c360.stages import lake_sink

log = logging.getLogger(__name__)


class Stack:
    """Everything `c360 trial` and `c360 up` run, started in order and stopped in reverse."""

    def __init__(
        self, settings: Settings, workers: int | None = None, services: str = "all"
    ) -> None:
        self.settings = settings
        self.workers = workers or settings.worker_processes
        #: "all", or only the "gateway" or the "workers" when instances scale out
        self.services = services
        self.postgres: EmbeddedPostgres | None = None
        self.valkey: EmbeddedValkey | None = None
        self.children: list[subprocess.Popen[bytes]] = []
        self._commands: dict[int, tuple[list[str], str]] = {}
        self.lock = datadir.DataDirLock(settings.data_dir)
        self._pauses: dict[str, float] = {}

    def start(self) -> Settings:
        """Lock the data folder, start engines (unless servers are configured), migrate,
        reconcile the lake index, start services."""
        datadir.create(self.settings.data_dir)
        self.lock.acquire()
        try:
            return self._start_locked()
        except BaseException:
            self.stop()
            raise

    def _start_locked(self) -> Settings:
        data_dir = self.settings.data_dir
        # checked before anything starts: the gateway would otherwise die after the engines
        serves_http = self.services != "workers"
        if serves_http and not port_is_free(self.settings.host, self.settings.port):
            raise datadir.InUse(
                f"port {self.settings.port} on {self.settings.host} is in use; choose another "
                "with --port"
            )
        if self.settings.postgres_dsn:  # else the embedded PostgreSQL prepares it for its user
            datadir.prepare(data_dir)
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
        with self._store() as conn:
            migrate.upgrade(conn)
            # before any worker runs its lake sink, so no event is claimed and written twice
            lake_sink.rebuild_index(conn, Runtime(self.settings).lake)
        self._clear_profile_cache()
        if self.services != "gateway":
            for index in range(self.workers):
                self._spawn(["worker", "--index", str(index)], f"worker-{index}")
        if serves_http:
            self._spawn(["gateway"], "gateway")
            self._wait_for_gateway()
        return self.settings

    def _store(self) -> psycopg.Connection:
        """A connection to the store, or an error that names the setting to fix."""
        try:
            return psycopg.connect(self.settings.postgres_dsn, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            reason = (str(exc).strip() or type(exc).__name__).splitlines()[0]
            raise AdapterError(
                f"cannot use PostgreSQL at {mask_password(self.settings.postgres_dsn)}: {reason}; "
                "check C360_POSTGRES_DSN (host, port, user, password, database)"
            ) from exc

    def _clear_profile_cache(self) -> None:
        """Start with an empty profile cache: the database may have changed while c360 was
        stopped (a rollback, a restore), and a stale cached profile would be served as true."""
        client = redis.Redis.from_url(self.settings.valkey_url)
        try:
            removed = ValkeyProfileCache(client, self.settings.cache_ttl_s).clear()
        except AdapterError as exc:
            raise AdapterError(
                f"cannot use Valkey at {mask_password(self.settings.valkey_url)}: {exc}; check "
                "C360_VALKEY_URL (redis://:password@host:port/0 or unix:///path)"
            ) from exc
        finally:
            client.close()
        log.info("Cleared %d profile cache entries at start-up.", removed)

    def supervise(self, stop: threading.Event) -> None:
        """Until `stop` is set, restart any embedded engine or service process that exits,
        with growing pauses (1 s doubling to a minute) so one that cannot start does not spin."""
        while not stop.wait(1.0):
            if not self._revive_engines(stop):
                return
            for position, child in enumerate(self.children):
                code = child.poll()
                if code is None:
                    continue
                args, name = self._commands[child.pid]
                log.error("The %s process (pid %d) exited with code %s.", name, child.pid, code)
                if not self._pause_before_restart(name, stop):
                    return
                self.children[position] = self._launch(args, name)

    def _revive_engines(self, stop: threading.Event) -> bool:
        """Restart a dead embedded engine; False if `stop` was set meanwhile. Valkey comes back
        on the same socket and PostgreSQL on its remembered port, so the services' clients
        reconnect; if PostgreSQL had to take another port, the services restart with it."""
        for name, engine in (("Valkey", self.valkey), ("PostgreSQL", self.postgres)):
            if engine is None or engine.alive:
                continue
            code = engine.process.poll() if engine.process else None
            log.error("The embedded %s exited with code %s.", name, code)
            if not self._pause_before_restart(name, stop):
                return False
            try:
                engine.start()
            except EngineError as exc:
                log.error("The embedded %s could not restart: %s", name, exc)
                continue
            log.warning("The embedded %s is running again.", name)
            if engine is self.postgres and self.settings.postgres_dsn != self.postgres.dsn:
                self._restart_services(postgres_dsn=self.postgres.dsn)
        return True

    def _pause_before_restart(self, name: str, stop: threading.Event) -> bool:
        """Wait the next pause for `name`; False if `stop` was set meanwhile."""
        pause = self._pauses.get(name, 0.5) * 2
        self._pauses[name] = min(pause, 60.0)
        log.warning("Restarting %s in %.0f s.", name, pause)
        return not stop.wait(pause)

    def _restart_services(self, **changes: object) -> None:
        """Stop every service and start it again with changed settings."""
        log.warning("Restarting the services with new settings: %s.", sorted(changes))
        self.settings = dataclasses.replace(self.settings, **changes)
        self._stop_services()
        self.children = [self._launch(*self._commands[child.pid]) for child in self.children]

    def stop(self) -> None:
        """Stop services, then engines, then let the next c360 use the data folder."""
        self._stop_services()
        if self.valkey:
            self.valkey.stop()
        if self.postgres:
            self.postgres.stop()
        self.lock.release()

    def _stop_services(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self.children:
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()

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
        run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        pid_file = run_dir / f"{name}.pid"
        stop_leftover(pid_file, _is_c360_service, timeout=15.0)
        env = {**os.environ, **to_environment(self.settings)}
        log_path = Path(self.settings.data_dir) / "logs" / f"{name}.log"
        log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with _private_append(log_path) as log_file:
            child = subprocess.Popen(
                [sys.executable, "-m", "c360.appliance.cli", *args],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                umask=datadir.PRIVATE_UMASK,  # lake files and anything else it writes: 0600
                preexec_fn=lambda: die_with_parent(signal.SIGTERM),
            )
        with _private_write(pid_file) as handle:
            handle.write(str(child.pid).encode())
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


def _private_append(path: Path) -> IO[bytes]:
    """Open a log for appending, created 0600 whatever the process umask."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")


def _private_write(path: Path) -> IO[bytes]:
    """Open a small file for writing from scratch, created 0600 whatever the process umask."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")


def _is_c360_service(process: psutil.Process) -> bool:
    """A c360 service process (a killed parent's children get SIGTERM, but one stuck on a
    dead engine may not exit)."""
    return "c360.appliance.cli" in " ".join(process.cmdline())
