"""`c360 users`, `c360 roles` and `c360 f0 sync`: the first admin is created from the command
line (no default password anywhere) and signs in through the API; refusals say what to change;
the commands reach the appliance's database whether it runs or not."""

from __future__ import annotations

import getpass
import io
import json

import pytest
from argon2 import PasswordHasher
from litestar.testing import TestClient

from c360 import accounts
from c360.api.app import create_app
from c360.appliance import datadir
from c360.appliance.cli import EXIT_OK, EXIT_USAGE, main
from c360.appliance.engines import EmbeddedPostgres

PASSWORD = "correct horse battery"
DOUBLE = "double-submit-token-for-tests"


@pytest.fixture(autouse=True)
def quick_hashing(monkeypatch) -> None:
    monkeypatch.setattr(
        accounts, "HASHER", PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
    )


@pytest.fixture
def on_test_database(runtime, monkeypatch, quiet_logs) -> None:
    monkeypatch.setenv("C360_POSTGRES_DSN", runtime.settings.postgres_dsn)
    monkeypatch.setenv("C360_VALKEY_URL", runtime.settings.valkey_url)
    monkeypatch.setenv("C360_DATA_DIR", str(runtime.settings.data_dir))


def run(monkeypatch, *argv: str, stdin: str = "") -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(list(argv))


def audit_rows(runtime) -> list[tuple[str, str, str]]:
    with runtime.pool.connection() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                "SELECT actor, action, target FROM governance.audit_log ORDER BY audit_id"
            )
        ]


def test_an_admin_created_by_the_cli_signs_in_through_the_api(
    runtime, on_test_database, monkeypatch, capsys
) -> None:
    code = run(
        monkeypatch,
        *("users", "create", "--name", "lan", "--role", "admin", "--password-stdin"),
        stdin=PASSWORD + "\n",
    )

    assert code == EXIT_OK and "created lan (admin)" in capsys.readouterr().out
    with TestClient(app=create_app(runtime.settings)) as client:
        client.cookies.set("c360_csrf", DOUBLE)
        answer = client.post(
            "/v1/session",
            json={"name": "lan", "password": PASSWORD},
            headers={"X-CSRF-Token": DOUBLE},
        )
        users = client.get("/v1/admin/users")
    assert answer.status_code == 200 and answer.json()["role"] == "admin"
    assert users.status_code == 200
    actor = f"cli:{getpass.getuser()}"
    assert (actor, "user.create", "user:lan") in audit_rows(runtime)


def test_without_password_stdin_the_password_is_asked_for_twice(
    runtime, on_test_database, monkeypatch, capsys
) -> None:
    answers = iter([PASSWORD, PASSWORD, PASSWORD, "something else entirely"])
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": next(answers))

    created = run(monkeypatch, "users", "create", "--name", "kim", "--role", "viewer")
    differs = run(monkeypatch, "users", "create", "--name", "minh", "--role", "viewer")

    assert created == EXIT_OK
    assert differs == EXIT_USAGE and "the two passwords differ" in capsys.readouterr().err
    with runtime.pool.connection() as conn:
        assert [user.name for user in accounts.list_users(conn)] == ["kim"]


@pytest.mark.parametrize(
    ("argv", "password", "message"),
    [
        (("--name", "lan", "--role", "boss"), PASSWORD, "the roles are admin, analyst, marketer"),
        (("--name", "lan", "--role", "admin"), "short", "at least 12 characters"),
        (("--name", "root", "--role", "admin"), PASSWORD, "exists already"),
        (("--name", "bad name", "--role", "admin"), PASSWORD, "a user name is"),
    ],
    ids=["unknown-role", "short-password", "duplicate", "bad-name"],
)
def test_a_user_the_cli_cannot_create_is_a_usage_error_saying_why(
    runtime, on_test_database, monkeypatch, capsys, argv, password, message
) -> None:
    with runtime.pool.connection() as conn:
        accounts.create_user(conn, "test", "root", "admin", PASSWORD)

    code = run(monkeypatch, "users", "create", *argv, "--password-stdin", stdin=password)

    assert code == EXIT_USAGE
    assert message in capsys.readouterr().err
    with runtime.pool.connection() as conn:
        assert [user.name for user in accounts.list_users(conn)] == ["root"]


def test_list_set_password_unlock_and_disable(
    runtime, on_test_database, monkeypatch, capsys
) -> None:
    with runtime.pool.connection() as conn:
        accounts.create_user(conn, "test", "lan", "analyst", PASSWORD)
        conn.execute("UPDATE governance.users SET locked_until = now() + interval '1 hour'")
    assert run(monkeypatch, "users", "list") == EXIT_OK
    listed = capsys.readouterr().out

    steps = [
        run(
            monkeypatch,
            "users",
            "set-password",
            "lan",
            "--password-stdin",
            stdin="new pass phrase!",
        ),
        run(monkeypatch, "users", "unlock", "lan"),
        run(monkeypatch, "users", "disable", "lan"),
        run(monkeypatch, "users", "unlock", "ghost"),
    ]

    assert "lan" in listed and "analyst" in listed and "locked" in listed
    assert steps == [EXIT_OK, EXIT_OK, EXIT_OK, EXIT_USAGE]
    assert "no user called 'ghost'" in capsys.readouterr().err
    with runtime.pool.connection() as conn:
        user = accounts.get_user(conn, "lan")
    assert user.disabled and user.locked_until is None
    actions = [action for _, action, target in audit_rows(runtime) if target == "user:lan"]
    assert actions[-3:] == ["user.password", "user.unlock", "user.disable"]
    assert run(monkeypatch, "users", "list") == EXIT_OK
    assert "disabled" in capsys.readouterr().out


def test_roles_list_and_create(runtime, on_test_database, monkeypatch, capsys) -> None:
    created = run(
        monkeypatch, "roles", "create", "auditor", "--permissions", "audit:read, governance:read"
    )
    typo = run(monkeypatch, "roles", "create", "other", "--permissions", "audit:reed")
    err = capsys.readouterr().err
    listed = run(monkeypatch, "roles", "list")
    out = capsys.readouterr().out

    assert (created, typo, listed) == (EXIT_OK, EXIT_USAGE, EXIT_OK)
    assert "unknown permission audit:reed" in err
    assert "auditor" in out and "custom" in out and "viewer" in out
    with runtime.pool.connection() as conn:
        assert accounts.get_role(conn, "auditor").permissions == ("governance:read", "audit:read")


def test_users_create_works_on_a_fresh_folder_and_beside_a_running_appliance(
    tmp_path, monkeypatch, capsys, quiet_logs
) -> None:
    data_dir = tmp_path / "data"
    for name in ("C360_POSTGRES_DSN", "C360_VALKEY_URL"):
        monkeypatch.delenv(name, raising=False)
    base = ("--data-dir", str(data_dir), "users")

    # nothing runs: the command starts the folder's engine for itself, migrated
    first = run(
        monkeypatch,
        *base,
        "create",
        "--name",
        "lan",
        "--role",
        "admin",
        "--password-stdin",
        stdin=PASSWORD,
    )
    assert first == EXIT_OK

    # a "running c360" holds the folder and serves its PostgreSQL: the command uses it
    lock = datadir.DataDirLock(data_dir)
    lock.acquire()
    postgres = EmbeddedPostgres(data_dir)
    postgres.start()
    try:
        second = run(
            monkeypatch,
            *base,
            "create",
            "--name",
            "kim",
            "--role",
            "viewer",
            "--password-stdin",
            stdin=PASSWORD,
        )
        import psycopg

        with psycopg.connect(postgres.dsn) as conn:
            names = [row[0] for row in conn.execute("SELECT name FROM governance.users")]
    finally:
        postgres.stop()
        lock.release()

    assert second == EXIT_OK
    assert sorted(names) == ["kim", "lan"]


def test_f0_sync_prints_the_run_s_outcome(runtime, on_test_database, monkeypatch, capsys):
    code = run(monkeypatch, "f0", "sync")

    outcome = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == EXIT_OK
    assert outcome["trigger"] == "cli" and outcome["actor"] == f"cli:{getpass.getuser()}"
    assert outcome["outcome"] != "failed"


CHANGES = ("user.role", "user.enable", "user.disable")


def test_set_role_and_enable_recover_an_appliance_left_without_an_admin(
    runtime, on_test_database, monkeypatch, capsys
) -> None:
    with runtime.pool.connection() as conn:
        accounts.create_user(conn, "test", "lan", "viewer", PASSWORD)
        accounts.create_user(conn, "test", "kim", "viewer", PASSWORD)
        accounts.disable_user(conn, "test", "kim")

    steps = [
        run(monkeypatch, "users", "set-role", "lan", "admin"),
        run(monkeypatch, "users", "enable", "kim"),
        run(monkeypatch, "users", "set-role", "lan", "ghost-role"),
    ]

    assert steps == [EXIT_OK, EXIT_OK, EXIT_USAGE]
    assert "no role called 'ghost-role'" in capsys.readouterr().err
    with runtime.pool.connection() as conn:
        lan, kim = accounts.get_user(conn, "lan"), accounts.get_user(conn, "kim")
    assert (lan.role, kim.disabled) == ("admin", False)
    changes = [action for _, action, _ in audit_rows(runtime) if action in CHANGES]
    assert changes == ["user.disable", "user.role", "user.enable"]  # the last two: the CLI
