"""The `c360` command."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shlex
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from c360.appliance import datadir, logs
from c360.errors import C360Error, SettingsError
from c360.settings import Settings, load_settings

#: Decimals print as exact JSON numbers (2500315.63), anything else unusual as text.
_JSON = msgspec.json.Encoder(enc_hook=str, decimal_format="number")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_SETTINGS = 2
#: A command line that asks for something c360 will not do as given (argparse also uses 2).
EXIT_USAGE = 2
#: The data folder or a port is held by another process; nothing was started.
EXIT_IN_USE = 3


class UsageError(C360Error):
    """An option has a value the command cannot work with."""


EPILOG = """examples:
  c360 trial                          replay CDNOW, print a summary, keep serving the API
  c360 trial --json --no-serve        the summary as JSON, then exit
  c360 trial --limit 5000 --data-dir /tmp/c360
  c360 up --data-dir /srv/c360        run the appliance on the embedded engines
  c360 migrate --down 0 --yes         roll the schema back (drops every table)
  c360 identity train                 train the probabilistic matcher on the profiles
  c360 identity dedupe --apply        merge duplicate profiles found by score
  c360 users create --name lan --role admin     the first administrator (asks for a password)
  c360 users list                     who may sign in, with role and state
  c360 users set-role lan admin       give a user another role (e.g. a new administrator)
  c360 users enable lan               let a disabled user sign in again
  c360 roles create auditor --permissions audit:read,governance:read
  c360 f0 sync                        apply the governance database to the running system
  c360 knowledge load products.csv --type product    embed and store a catalogue file
  c360 knowledge search "cà phê sữa" --type product   what the agents would find
"""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `c360` console script."""
    os.umask(datadir.PRIVATE_UMASK)  # customer data, secrets and logs: for the owner only
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except SettingsError as exc:
        return _fail(str(exc), EXIT_BAD_SETTINGS)
    except UsageError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except datadir.InUse as exc:
        return _fail(str(exc), EXIT_IN_USE)
    except C360Error as exc:
        return _fail(str(exc), EXIT_FAILED)
    except OSError as exc:  # last resort: say which path, not a traceback
        return _fail(_describe_os_error(exc), EXIT_FAILED)
    except KeyboardInterrupt:
        return EXIT_FAILED


def _run(args: argparse.Namespace) -> int:
    settings = load_settings(
        {"data_dir": args.data_dir, "port": getattr(args, "port", None)},
        config_file=args.config,
    )
    logs.configure(settings, quiet=getattr(args, "json", False))
    return int(args.func(settings, args) or EXIT_OK)


def _fail(message: str, code: int) -> int:
    print(f"c360: {message}", file=sys.stderr)
    return code


def _describe_os_error(exc: OSError) -> str:
    path = exc.filename or "a file"
    return (
        f"cannot use {path} ({exc.strerror or exc}); check that it exists and that this user "
        "may read and write it, or choose another --data-dir"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="c360",
        description="c360: events in, unified customer profiles out.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data-dir", type=Path, help="data folder (default: user data dir)")
    parser.add_argument("--config", type=Path, help="TOML settings file")
    commands = parser.add_subparsers(dest="command", required=True)

    trial = commands.add_parser("trial", help="replay the CDNOW purchase log and summarise")
    trial.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS, help="data folder")
    trial.add_argument("--limit", type=int, help="replay only the first N purchases")
    trial.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    trial.add_argument("--no-serve", action="store_true", help="exit after the summary")
    trial.add_argument("--port", type=int, help="port for the gateway and API")
    trial.add_argument("--dataset", type=Path, help="a CDNOW_master.txt to use instead")
    trial.add_argument(
        "--stack",
        choices=("embedded", "servers"),
        default="embedded",
        help="embedded engines (default), or the servers C360_* settings point at",
    )
    trial.set_defaults(func=_trial)

    up = commands.add_parser("up", help="run the appliance (embedded engines unless configured)")
    up.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS)
    up.add_argument("--port", type=int)
    up.add_argument("--workers", type=int, help="worker processes (default: C360_WORKER_PROCESSES)")
    up.add_argument(
        "--services",
        choices=("all", "gateway", "workers"),
        default="all",
        help="which services this instance runs; more instances of either scale out on shared "
        "servers (both need C360_POSTGRES_DSN and C360_VALKEY_URL)",
    )
    up.set_defaults(func=_up)

    migrate_cmd = commands.add_parser("migrate", help="apply (or roll back) schema migrations")
    migrate_cmd.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS)
    migrate_cmd.add_argument("--down", type=int, help="roll back to this version")
    migrate_cmd.add_argument(
        "--yes", action="store_true", help="confirm a roll-back (it drops tables and their rows)"
    )
    migrate_cmd.set_defaults(func=_migrate)

    identity = commands.add_parser(
        "identity", help="train the probabilistic matcher, or deduplicate all profiles"
    )
    identity.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS)
    identity.add_argument("action", choices=("train", "dedupe"))
    identity.add_argument(
        "--apply", action="store_true", help="dedupe: merge and queue what it finds"
    )
    identity.set_defaults(func=_identity)

    _add_account_commands(commands)

    f0 = commands.add_parser("f0", help="F0 metadata sync: apply the governance database")
    f0.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS)
    f0.add_argument("action", choices=("sync",))
    f0.add_argument("--backfill", action="store_true", help="also back-fill every active attribute")
    f0.set_defaults(func=_f0)

    _add_knowledge_commands(commands)

    show = commands.add_parser("settings", help="print the settings in force (secrets masked)")
    show.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS)
    show.set_defaults(func=_show_settings)

    gateway = commands.add_parser("gateway", help="(internal) run the gateway process")
    gateway.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS)
    gateway.set_defaults(func=_gateway)

    worker = commands.add_parser("worker", help="(internal) run a worker process")
    worker.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS)
    worker.add_argument("--index", type=int, default=0)
    worker.set_defaults(func=_worker)
    return parser


def _add_account_commands(commands: Any) -> None:
    """`c360 users ...` and `c360 roles ...`: the people who sign in, and their roles."""
    users = commands.add_parser("users", help="manage the people who sign in to the UI")
    users.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS)
    actions = users.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="add a user (asks for the password twice)")
    create.add_argument("--name", required=True)
    create.add_argument("--role", required=True, help="admin, analyst, marketer, viewer or custom")
    create.add_argument("--email")
    create.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )
    actions.add_parser("list", help="every user with role and state")
    password = actions.add_parser("set-password", help="give a user a new password")
    password.add_argument("name")
    password.add_argument("--password-stdin", action="store_true")
    actions.add_parser("unlock", help="lift a lock-out").add_argument("name")
    actions.add_parser("disable", help="stop a user signing in").add_argument("name")
    actions.add_parser("enable", help="let a disabled user sign in again").add_argument("name")
    set_role = actions.add_parser("set-role", help="give a user another role (ends sessions)")
    set_role.add_argument("name")
    set_role.add_argument("role", help="admin, analyst, marketer, viewer or custom")
    for sub in actions.choices.values():
        sub.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS)
    users.set_defaults(func=_users)

    roles = commands.add_parser("roles", help="list roles, or add a custom one")
    roles.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS)
    role_actions = roles.add_subparsers(dest="action", required=True)
    role_actions.add_parser("list", help="every role with its permissions")
    role_create = role_actions.add_parser("create", help="add a custom role")
    role_create.add_argument("name")
    role_create.add_argument(
        "--permissions", required=True, help="comma-separated, e.g. audit:read,governance:read"
    )
    role_create.add_argument("--description", default="")
    for sub in role_actions.choices.values():
        sub.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS)
    roles.set_defaults(func=_roles)


def _add_knowledge_commands(commands: Any) -> None:
    # types and modes are checked by c360.knowledge, whose messages list the valid ones;
    # importing it here would load numpy and the store into every `c360` command
    knowledge = commands.add_parser("knowledge", help="load, search and re-embed knowledge")
    actions = knowledge.add_subparsers(dest="action", required=True)
    load = actions.add_parser("load", help="embed and store the items of a CSV or JSON file")
    load.add_argument("path", type=Path)
    load.add_argument("--type", help="the type of rows that have none (product, place, ...)")
    find = actions.add_parser("search", help="search the knowledge as the agents do")
    find.add_argument("text")
    find.add_argument("--type", action="append", dest="types", help="product, place, ...")
    find.add_argument("--region")
    find.add_argument("--mode", default="hybrid", help="hybrid (default), vector or text")
    find.add_argument("-k", type=int, default=10)
    actions.add_parser("reembed", help="embed every item again with the configured model")
    for sub in actions.choices.values():
        sub.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS)
    knowledge.set_defaults(func=_knowledge)


def _trial(settings: Settings, args: argparse.Namespace) -> int:
    from c360.appliance.trial import TrialOptions, my_write_key, run_trial

    if args.limit is not None and args.limit < 1:
        raise UsageError("limit must be at least 1; give --limit N, or leave it out to replay all")
    if args.dataset is not None and not args.dataset.is_file():
        raise UsageError(
            f"the dataset {args.dataset} does not exist or is not a file; give the path of a "
            "CDNOW_master.txt with --dataset, or leave --dataset out to download it"
        )
    if args.stack == "servers":
        missing = [
            f"C360_{name.upper()}"
            for name in ("postgres_dsn", "valkey_url")
            if not getattr(settings, name)
        ]
        if missing:
            raise UsageError(
                f"--stack servers needs {', '.join(missing)}: start the local servers with "
                "`scripts/servers --dir .servers` and load their settings with "
                '`eval "$(cat .servers/servers.env)"`'
            )
    elif settings.postgres_dsn or settings.valkey_url:
        raise UsageError(
            "C360_POSTGRES_DSN / C360_VALKEY_URL are set, so this trial would run on those "
            "servers: say so with --stack servers, or unset them for the embedded engines"
        )
    options = TrialOptions(limit=args.limit, serve=not args.no_serve, dataset=args.dataset)
    progress = None if args.json else _progress_printer()
    summary, stack = run_trial(settings, options, progress)
    if args.json:
        print(_JSON.encode(summary).decode())
    else:
        _print_summary(summary, my_write_key(stack.settings), _chosen_data_dir(args))
    sys.stdout.flush()
    if options.serve:
        _serve_until_interrupted(stack)
        stack.stop()
    return EXIT_OK


def _up(settings: Settings, args: argparse.Namespace) -> int:
    from c360.appliance.stack import Stack

    if args.services != "all" and not (settings.postgres_dsn and settings.valkey_url):
        raise UsageError(
            f"--services {args.services} scales out on shared servers: set C360_POSTGRES_DSN "
            "and C360_VALKEY_URL (and C360_KAFKA_BOOTSTRAP for a Kafka bus) to the servers "
            "every instance uses"
        )
    if args.workers is not None and not 1 <= args.workers <= 64:
        raise UsageError(f"--workers takes 1 to 64 worker processes; got {args.workers}")
    if not settings.write_keys:
        raise SettingsError(
            "no write key is configured, so no source could send events: set C360_WRITE_KEYS "
            "to 'key:source[,key:source...]' (keys of at least 8 characters)"
        )
    if not settings.api_tokens:
        logging.getLogger(__name__).warning(
            "No API token is set, so the profile API will refuse every request until "
            "C360_API_TOKENS is set."
        )
    stack = Stack(settings, workers=args.workers, services=args.services)
    stack.start()
    if args.services == "workers":
        print(
            f"c360 instance {settings.instance_name!r} is running {stack.workers} worker "
            "process(es) (Ctrl-C to stop)"
        )
    else:
        print(f"c360 is serving on {stack.url} (Ctrl-C to stop)")
    _serve_until_interrupted(stack)
    stack.stop()
    return EXIT_OK


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    import psycopg

    from c360 import migrate

    if args.down is not None:
        versions = [m.version for m in migrate.available()]
        if not 0 <= args.down < max(versions):
            raise UsageError(
                f"--down takes the version to roll back to, from 0 to {max(versions) - 1}; "
                f"got {args.down}"
            )
        if not args.yes:
            raise UsageError(_roll_back_warning(args.down))
    with _database(settings) as dsn, psycopg.connect(dsn, autocommit=True) as conn:
        changed = (
            migrate.downgrade(conn, args.down) if args.down is not None else migrate.upgrade(conn)
        )
    print(
        f"migrations {'rolled back' if args.down is not None else 'applied'}: {changed or 'none'}"
    )
    return EXIT_OK


def _identity(settings: Settings, args: argparse.Namespace) -> int:
    import psycopg

    from c360 import migrate
    from c360.stages import f3_match

    if args.apply and args.action != "dedupe":
        raise UsageError("--apply goes with `c360 identity dedupe` only")
    if not settings.postgres_dsn and not (settings.data_dir / "postgres").is_dir():
        raise UsageError(
            f"no c360 data in {settings.data_dir}: check --data-dir (or C360_DATA_DIR), or run "
            "`c360 up` there first"
        )
    with _database(settings, share=True) as dsn, psycopg.connect(dsn, autocommit=True) as conn:
        migrate.upgrade(conn)
        try:
            if args.action == "train":
                summary = f3_match.train_profiles(conn, settings.default_region)
            else:
                summary, changed = f3_match.dedupe_profiles(conn, apply=args.apply)
                if changed:
                    summary["cache"] = _refresh_cached_profiles(settings, dsn, changed)
        except ValueError as exc:
            return _fail(str(exc), EXIT_FAILED)
    print(json.dumps(summary, default=str, ensure_ascii=False))
    return EXIT_OK


def _users(settings: Settings, args: argparse.Namespace) -> int:
    """Manage users on the database the appliance uses (running or not)."""
    from c360 import accounts

    password = None
    if args.action in ("create", "set-password"):
        password = _read_password(args.password_stdin)
    with _accounts_connection(settings) as conn:
        actor = _cli_actor()
        if args.action == "create":
            user = accounts.create_user(conn, actor, args.name, args.role, password, args.email)
            print(f"created {user.name} ({user.role}); they can sign in now")
        elif args.action == "list":
            _print_users(accounts.list_users(conn))
        elif args.action == "set-password":
            accounts.reset_password(conn, actor, args.name, password or "")
            print(f"new password set for {args.name}; their sessions have ended")
        elif args.action == "unlock":
            accounts.unlock_user(conn, actor, args.name)
            print(f"{args.name} is unlocked")
        elif args.action == "enable":
            accounts.enable_user(conn, actor, args.name)
            print(f"{args.name} is enabled; they can sign in now")
        elif args.action == "set-role":
            user = accounts.set_role(conn, actor, args.name, args.role)
            print(f"{user.name} is now {user.role}; their sessions have ended")
        else:
            accounts.disable_user(conn, actor, args.name)
            print(f"{args.name} is disabled; their sessions have ended")
    return EXIT_OK


def _roles(settings: Settings, args: argparse.Namespace) -> int:
    """List roles, or add a custom role."""
    from c360 import accounts

    with _accounts_connection(settings) as conn:
        if args.action == "create":
            names = [name.strip() for name in args.permissions.split(",") if name.strip()]
            role = accounts.create_role(conn, _cli_actor(), args.name, names, args.description)
            print(f"created role {role.name}: {', '.join(role.permissions) or 'no permissions'}")
        else:
            for role in accounts.list_roles(conn):
                kind = "built-in" if role.built_in else "custom"
                print(f"{role.name:<16} {kind:<9} {', '.join(role.permissions)}")
    return EXIT_OK


def _f0(settings: Settings, args: argparse.Namespace) -> int:
    """Run F0 once and print the run's outcome."""
    import dataclasses

    from c360.governance import f0
    from c360.runtime import Runtime

    with _database(settings, share=True) as dsn, _valkey(settings) as url:
        runtime = Runtime(dataclasses.replace(settings, postgres_dsn=dsn, valkey_url=url))
        try:
            run = f0.sync(runtime, _cli_actor(), backfill=args.backfill, trigger="cli")
        finally:
            runtime.close()
    print(_JSON.encode(run.as_dict()).decode())
    return EXIT_OK if run.outcome != "failed" else EXIT_FAILED


def _knowledge(settings: Settings, args: argparse.Namespace) -> int:
    """Load a file into the knowledge store, search it, or embed it again after a model
    change; works beside a running appliance on the same folder. A refused file or query is
    one line and exit status 2; a database failure one line and status 1, never a traceback."""
    import psycopg

    from c360.errors import InputError

    try:
        return _knowledge_action(settings, args)
    except InputError as exc:
        raise UsageError(exc.message) from exc
    except psycopg.DataError as exc:  # a value the checks let through: say so, in one line
        raise UsageError(f"the database refused a value: {_first_line(exc)}") from exc
    except psycopg.Error as exc:
        raise C360Error(f"the database failed: {_first_line(exc)}") from exc


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _knowledge_action(settings: Settings, args: argparse.Namespace) -> int:
    import dataclasses

    import psycopg

    from c360 import migrate
    from c360.knowledge import loaders, search, store
    from c360.runtime import Runtime

    if not settings.postgres_dsn and not (settings.data_dir / "postgres").is_dir():
        raise UsageError(
            f"no c360 data in {settings.data_dir}: check --data-dir (or C360_DATA_DIR), or run "
            "`c360 up` there first"
        )
    items = loaders.load_file(args.path, args.type) if args.action == "load" else []
    progress = None if args.action == "search" else _embedding_progress
    with _database(settings, share=True) as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate.upgrade(conn)
        # the knowledge store never opens Valkey; the runtime only wants a URL to be set
        local = dataclasses.replace(settings, postgres_dsn=dsn, valkey_url="redis://unused")
        runtime = Runtime(local)
        try:
            if args.action == "load":
                result = dataclasses.asdict(store.upsert(runtime, items, progress))
            elif args.action == "reembed":
                result = {"reembedded": store.reembed(runtime, progress)}
            else:
                hits = search.search(
                    runtime, args.text, types=args.types, region=args.region, k=args.k,
                    mode=args.mode,
                )  # fmt: skip
                # named as the API names them: `id`, not the dataclass's item_id
                result = {"hits": [_knowledge_hit(dataclasses.asdict(hit)) for hit in hits]}
        finally:
            runtime.close()
    print(_JSON.encode(result).decode())
    return EXIT_OK


def _knowledge_hit(hit: dict[str, Any]) -> dict[str, Any]:
    return {"id": hit.pop("item_id"), **hit}


def _embedding_progress(done: int, total: int) -> None:
    print(f"embedded and stored {done:,} of {total:,} items", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _accounts_connection(settings: Settings) -> Iterator[Any]:
    """A connection to the appliance's database, migrated; a refused change (a short password,
    an unknown role, a duplicate name) becomes a usage error with c360's message."""
    import psycopg

    from c360 import migrate
    from c360.accounts import AccountError

    with _database(settings, share=True) as dsn, psycopg.connect(dsn, autocommit=True) as conn:
        migrate.upgrade(conn)
        try:
            yield conn
        except AccountError as exc:
            raise UsageError(exc.message) from exc


@contextlib.contextmanager
def _valkey(settings: Settings) -> Iterator[str]:
    """The URL of the configured Valkey, of the one a running appliance serves on the folder,
    or of one started for the command (the folder is then this command's: `_database` holds
    its lock)."""
    import redis

    from c360.appliance.engines import EmbeddedValkey

    if settings.valkey_url:
        yield settings.valkey_url
        return
    engine = EmbeddedValkey(settings.data_dir)
    try:
        redis.Redis.from_url(engine.url, socket_connect_timeout=2).ping()
    except (redis.RedisError, OSError):
        engine.start()
        try:
            yield engine.url
        finally:
            engine.stop()
        return
    yield engine.url


def _read_password(from_stdin: bool) -> str:
    """The password from stdin (its line ending dropped), or asked for twice on the terminal;
    there is no default password anywhere."""
    import getpass

    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password (12 characters or more): ")
    if getpass.getpass("the same password again: ") != first:
        raise UsageError("the two passwords differ; run the command again")
    return first


def _cli_actor() -> str:
    """How the audit log names whoever runs the command: `cli:<OS user>`."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no name for this uid (a bare container)
        return f"cli:uid-{os.getuid()}"


def _print_users(users: list[Any]) -> None:
    if not users:
        print("no users yet: create the first with `c360 users create --name NAME --role admin`")
        return
    for user in users:
        state = "disabled" if user.disabled else "locked" if _locked(user) else "active"
        last = f"{user.last_sign_in_at:%Y-%m-%d %H:%M} UTC" if user.last_sign_in_at else "never"
        print(f"{user.name:<24} {user.role:<12} {state:<9} last sign-in {last}")


def _locked(user: Any) -> bool:
    from datetime import UTC, datetime

    return user.locked_until is not None and user.locked_until > datetime.now(UTC)


def _refresh_cached_profiles(settings: Settings, dsn: str, profile_ids: list[Any]) -> str:
    """Give a running appliance's profile cache the merged profiles' new documents (and drop
    the merged-away ones), so reads are not stale; a stopped one clears its cache at start."""
    import dataclasses

    import redis

    from c360.appliance.engines import EmbeddedValkey
    from c360.runtime import Runtime
    from c360.stages.f3_resolve import publish_profiles

    url = settings.valkey_url or EmbeddedValkey(settings.data_dir).url
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except (redis.RedisError, OSError):
        return "no running cache to refresh"
    runtime = Runtime(dataclasses.replace(settings, postgres_dsn=dsn, valkey_url=url))
    try:
        runtime.cache.forget([str(profile_id) for profile_id in profile_ids])
        publish_profiles(runtime, profile_ids)
    finally:
        runtime.close()
    return f"refreshed {len(set(profile_ids))} profiles"


@contextlib.contextmanager
def _database(settings: Settings, share: bool = False) -> Iterator[str]:
    """The DSN of the configured PostgreSQL, or of the embedded one started for the command.
    With `share`, the embedded server of a c360 already running on the folder is used."""
    from c360.appliance.engines import EmbeddedPostgres

    if settings.postgres_dsn:
        yield settings.postgres_dsn
        return
    datadir.create(settings.data_dir)
    lock = datadir.DataDirLock(settings.data_dir)
    engine = EmbeddedPostgres(settings.data_dir)
    try:
        lock.acquire()
    except datadir.InUse:
        if share and engine.attach():  # a running appliance: work on its database
            yield engine.dsn
            return
        raise
    try:
        engine.start()
        yield engine.dsn
    finally:
        engine.stop()
        lock.release()


def _roll_back_warning(target: int) -> str:
    """What `migrate --down target` would drop, and how to confirm it."""
    from c360 import migrate

    undone = migrate.rolled_back_by(target)
    if not undone:
        return f"no migration is newer than version {target}; nothing to roll back"
    tables = ", ".join(migrate.tables_dropped(undone)) or "no tables"
    versions = ", ".join(f"{m.version:04d}" for m in undone)
    return (
        f"rolling back to version {target} undoes migrations {versions} and drops {tables} "
        "with every row in them (the lake files stay); add --yes to do it"
    )


def _show_settings(settings: Settings, args: argparse.Namespace) -> int:
    print(json.dumps(settings.redacted(), default=str, indent=2))
    return EXIT_OK


def _gateway(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from c360.appliance.web import web_app
    from c360.settings import to_environment

    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": "warning",
        "access_log": False,
        "log_config": None,  # uvicorn's records go through c360's handler (text or JSON)
        "timeout_graceful_shutdown": 10,
    }
    if settings.gateway_processes == 1:
        uvicorn.run(web_app(settings), **options)
    else:  # each process builds its app from the C360_* environment the stack passed down
        os.environ.update(to_environment(settings))
        uvicorn.run(
            "c360.appliance.cli:gateway_process_app",
            factory=True,
            workers=settings.gateway_processes,
            **options,
        )
    return EXIT_OK


def gateway_process_app() -> Any:
    """The app of one of several gateway processes: it dies with the process that started it,
    so a killed `c360 gateway` never leaves processes holding its port."""
    from c360.appliance import logs
    from c360.appliance.engines import die_with_parent
    from c360.appliance.web import web_app

    die_with_parent(signal.SIGTERM)
    settings = load_settings()
    logs.configure(settings)  # a process uvicorn started: the log format is set up afresh
    return web_app(settings)


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from c360.appliance.worker import run_worker

    run_worker(settings, args.index)
    return EXIT_OK


def _serve_until_interrupted(stack: Any) -> None:
    """Keep the stack's services running (restarting any that exit) until SIGTERM or Ctrl-C."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stack.supervise(stop)


def _progress_printer() -> Any:
    def show(done: int, total: int) -> None:
        width = 30
        filled = int(width * done / total) if total else width
        end = "\n" if done >= total else ""
        print(
            f"\rreplaying  [{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,}",
            end=end,
            file=sys.stderr,
            flush=True,
        )

    return show if sys.stderr.isatty() else None


def _chosen_data_dir(args: argparse.Namespace) -> str | None:
    """The --data-dir the user gave (other commands need it too), or None for the default."""
    given = getattr(args, "data_dir", None)
    return str(given) if given else None


def _print_summary(
    summary: dict[str, Any], my_key: str | None = None, data_dir: str | None = None
) -> None:
    lines = [
        "c360 trial: CDNOW purchase log",
        f"  events accepted   {summary['events_accepted']:>12,}",
        f"  events rejected   {summary['events_rejected']:>12,}",
        f"  events stored     {summary['events_stored']:>12,}   (unique, across runs)",
        f"  events in lake    {summary['events_in_lake']:>12,}",
        f"  profiles          {summary['profiles']:>12,}",
        f"  orders            {summary['orders_total']:>12,}",
        f"  revenue total     {summary['revenue_total']:>12}",
        f"  events / second   {summary['events_per_second']:>12,}"
        f"   (replay {summary['replay_seconds']} s)",
        f"  end to end        {summary['end_to_end_seconds']:>12} s",
        f"  freshness p50/p95 {summary['freshness_p50_ms']} / {summary['freshness_p95_ms']} ms"
        f"   ({summary['freshness_scope']})",
        "  top customers:",
    ]
    for row in summary["top_customers"]:
        lines.append(f"    {row['user_id']:<14} {row['orders']:>4} orders  {row['revenue']:>10}")
    if summary.get("api"):
        lines.append(f"\nThe API is serving on {summary['api']} (Ctrl-C to stop). Try:")
        lines.append(
            f"  curl -H 'Authorization: Bearer {summary['api_token']}' "
            f"{summary['api']}/v1/profiles/cdnow-00001"
        )
        if my_key:
            lines += _my_events_lines(summary["api"], my_key)
        if summary.get("chat_demo"):
            lines.append(f"Chat with the agent as customer cdnow-00001: {summary['chat_demo']}")
        lines += _sign_in_lines(summary["api"], data_dir)
    print("\n".join(lines))


def _sign_in_lines(api: str, data_dir: str | None) -> list[str]:
    """How to open the dashboards: there is no default account, so first make an admin."""
    folder = f" --data-dir {shlex.quote(data_dir)}" if data_dir else ""
    return [
        "Open the dashboards: create an admin in another terminal (there is no default one),",
        f"  c360 users create --name admin --role admin{folder}",
        f"then sign in at {api}/login",
    ]


def _my_events_lines(api: str, my_key: str) -> list[str]:
    """How to send events of one's own, under a source of their own (not mixed into CDNOW)."""
    from c360.appliance.trial import MY_SOURCE

    body = '{"userId": "me-1", "event": "Tried c360", "properties": {"plan": "trial"}}'
    return [
        f"Send your own events with your write key (source {MY_SOURCE!r}):",
        f"  curl -u '{my_key}:' -H 'Content-Type: application/json' -d '{body}' {api}/v1/track",
    ]


if __name__ == "__main__":
    sys.exit(main())
