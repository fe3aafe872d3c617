"""Scaling out on shared servers: a second `c360 up --services workers` instance joins the
first one's consumer groups, takes half the partitions, and together they count every event
exactly once, in profiles and in the shared S3 lake. Servers are real and local (Kafka, Valkey,
PostgreSQL, SeaweedFS), started by the project's own `c360.appliance.servers`."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg
import pytest
from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from c360.adapters.lake import Lake
from c360.appliance.servers import LocalServers
from c360.runtime import Runtime
from c360.settings import load_settings
from c360.stages import F2_GROUP

from .conftest import c360_command, clean_environment, free_port, logs_tail

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

WRITE_KEY = "scale-out-key-1"
CUSTOMERS = 40
ORDERS_EACH = 5
WAIT_S = 120.0


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServers]:
    started = LocalServers(tmp_path_factory.mktemp("scale") / "servers")
    started.start()
    try:
        yield started
    finally:
        started.stop()


def up(servers: LocalServers, folder: Path, instance: str, services: str, port: int):
    """A `c360 up` instance on the shared servers, its output in a file."""
    env = {
        **clean_environment(),
        **servers.environment(),
        "C360_INSTANCE_NAME": instance,
        "C360_WRITE_KEYS": f"{WRITE_KEY}:web",
        "C360_API_TOKENS": "scale-out-token",
        "C360_GATEWAY_PROCESSES": "1",
    }
    log = (folder / f"{instance}.out").open("wb")
    command = [*c360_command(), "up", "--data-dir", str(folder / instance), "--port", str(port),
               "--workers", "1", "--services", services]  # fmt: skip
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_for(check, what: str, processes, folder: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        for process in processes:
            assert process.poll() is None, f"an instance exited while waiting for {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}{logs_tail(folder)}"
        time.sleep(0.5)


def group_members(bootstrap: str) -> dict[str, int]:
    """client id -> partitions assigned, for each member of the F2 consumer group."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        group = admin.describe_groups([F2_GROUP])[F2_GROUP]
        return {
            member["client_id"]: sum(
                len(item["partitions"])
                for item in (member.get("member_assignment") or {}).get("assigned_partitions", [])
            )
            for member in group.get("members", [])
        }
    finally:
        admin.close()


def test_a_second_worker_instance_shares_the_partitions_and_nothing_is_counted_twice(
    servers: LocalServers, tmp_path: Path
) -> None:
    port = free_port()
    first = up(servers, tmp_path, "box-a", "all", port)
    second = up(servers, tmp_path, "box-b", "workers", free_port())
    instances = [first, second]
    try:
        bootstrap = servers.kafka.bootstrap

        def both_hold_partitions() -> bool:
            try:
                members = group_members(bootstrap)
            except KafkaError:  # the group's coordinator is not ready yet
                return False
            owners = {name for name, parts in members.items() if parts}
            return {"f2-box-a-0", "f2-box-b-0"} <= owners

        wait_for(both_hold_partitions, "both instances in the F2 group", instances, tmp_path)
        wait_for(lambda: _answers(port), "the gateway", instances, tmp_path)
        run = uuid.uuid4().hex[:6]
        expected_orders: Counter[str] = Counter()
        expected_revenue: dict[str, Decimal] = {}
        batch = []
        for n in range(CUSTOMERS * ORDERS_EACH):
            user = f"scale-{run}-{n % CUSTOMERS}"
            revenue = Decimal(n % 97) + Decimal("0.35")
            expected_orders[user] += 1
            expected_revenue[user] = expected_revenue.get(user, Decimal(0)) + revenue
            batch.append(
                {
                    "type": "track",
                    "event": "Order Completed",
                    "userId": user,
                    "messageId": f"{run}-{n}",
                    "properties": {"revenue": str(revenue)},
                }
            )
        for start in range(0, len(batch), 50):
            answer = httpx.post(f"http://127.0.0.1:{port}/v1/batch", auth=(WRITE_KEY, ""),
                                json={"batch": batch[start : start + 50]}, timeout=30)  # fmt: skip
            assert answer.status_code == 200, answer.text

        dsn = servers.environment()["C360_POSTGRES_DSN"]

        def all_counted() -> bool:
            return sum(_orders(dsn, run).values()) >= len(batch)

        wait_for(all_counted, "every order in a profile", instances, tmp_path)
        lake = _lake(servers)
        wait_for(lambda: len(_in_lake(lake, run)) >= len(batch), "every order in the lake",
                 instances, tmp_path)  # fmt: skip
        time.sleep(2)  # anything counted or written twice would show up now
        orders = _orders(dsn, run)
        revenue = _revenue(dsn, run)
        in_lake = Counter(_in_lake(lake, run))
    finally:
        for instance in instances:
            instance.terminate()
        for instance in instances:
            instance.wait(60)

    assert orders == dict(expected_orders)
    assert revenue == expected_revenue
    assert in_lake == Counter({("web", f"{run}-{n}"): 1 for n in range(len(batch))})
    worker_logs = {name: (tmp_path / name / "logs" / "worker-0.log").read_text() for name in
                   ("box-a", "box-b")}  # fmt: skip
    for name, text in worker_logs.items():
        assert "Worker 0 running" in text, f"{name}'s worker never ran"


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _lake(servers: LocalServers) -> Lake:
    """The shared S3 lake, as c360 reaches it from the servers' settings."""
    settings = load_settings({}, environ=servers.environment())
    return Runtime(settings).lake


def _in_lake(lake: Lake, run: str) -> list[tuple[str, str]]:
    """(source, messageId) of every row of this run in the lake, duplicates kept."""
    keys = [key for name in lake.files() for key in lake.read_keys(name)]
    return [key for key in keys if key[1].startswith(f"{run}-")]


def _profiles(dsn: str, run: str) -> dict[str, tuple[int, Decimal]]:
    """userId -> (orders, revenue) of this run's live profiles."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT i.id_value, p.order_count, p.revenue FROM identifiers i"
            " JOIN profiles p ON p.profile_id = i.profile_id"
            " WHERE i.id_type = 'user_id' AND i.id_value LIKE %s AND p.merged_into IS NULL",
            (f"scale-{run}-%",),
        ).fetchall()
    return {user: (count, amount) for user, count, amount in rows}


def _orders(dsn: str, run: str) -> dict[str, int]:
    return {user: count for user, (count, _) in _profiles(dsn, run).items()}


def _revenue(dsn: str, run: str) -> dict[str, Decimal]:
    return {user: amount for user, (_, amount) in _profiles(dsn, run).items()}
