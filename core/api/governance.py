"""The governance JSON API under /v1/admin: attribute definitions, F0 runs, access policies,
lineage, deletion requests, the compliance report and the audit log (JSON or CSV).

Each route declares its permission for the accounts guard; each change is audited by the
service it calls (c360.governance.*), with the request's principal as the actor.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from litestar import Request, Response, Router, get, patch, post, put
from litestar.datastructures import State

from c360 import audit
from c360.access import Principal
from c360.errors import InputError, Unauthorized
from c360.events.model import decode_any, encode
from c360.events.timestamps import parse_time
from c360.governance import attributes, compliance, deletions, f0, lineage, policies

#: Largest page of the audit log or the F0 runs in one answer.
MAX_LIMIT = 10_000
#: The compliance report covers the last 30 days unless asked otherwise.
DEFAULT_PERIOD = timedelta(days=30)
_AUDIT_PARAMETERS = ("since", "until", "action", "actor", "limit", "offset", "format")
_AUDIT_COLUMNS = ("audit_id", "at", "actor", "action", "target", "before", "after", "detail")


@get("/v1/admin/attributes", sync_to_thread=True, opt={"permission": "governance:read"})
def list_attributes(state: State) -> Response[bytes]:
    """Every attribute definition, built-in ones first."""
    with state.runtime.pool.connection() as conn:
        found = attributes.list_definitions(conn)
    return _json({"attributes": [d.as_dict() for d in found]})


@post("/v1/admin/attributes", sync_to_thread=True, opt={"permission": "governance:write"})
def create_attribute(request: Request, state: State, body: bytes) -> Response[bytes]:
    """Define an attribute; it is `pending` until an F0 sync activates it."""
    actor = _principal(request).actor
    with state.runtime.pool.connection() as conn:
        created = attributes.create_definition(conn, actor, _object(body))
    return _json(created.as_dict(), status=201)


@patch(
    "/v1/admin/attributes/{name:str}",
    sync_to_thread=True,
    opt={"permission": "governance:write"},
)
def update_attribute(request: Request, state: State, name: str, body: bytes) -> Response[bytes]:
    """Change a definition: a new version, `pending` until the next F0 sync."""
    actor = _principal(request).actor
    with state.runtime.pool.connection() as conn:
        updated = attributes.update_definition(conn, actor, name, _object(body))
    return _json(updated.as_dict())


@post(
    "/v1/admin/attributes/{name:str}/retire",
    sync_to_thread=True,
    status_code=200,
    opt={"permission": "governance:write"},
)
def retire_attribute(request: Request, state: State, name: str) -> Response[bytes]:
    """Retire a definition (kept for the record; F3 stops computing it)."""
    actor = _principal(request).actor
    with state.runtime.pool.connection() as conn:
        retired = attributes.retire_definition(conn, actor, name)
    return _json(retired.as_dict())


@post("/v1/admin/f0/sync", sync_to_thread=True, opt={"permission": "governance:write"})
def run_sync(request: Request, state: State, body: bytes) -> Response[bytes]:
    """Run F0 now: `{"backfill": false | true | ["attribute", ...]}` (optional)."""
    actor = _principal(request).actor
    data = _object(body or b"{}", allowed=("backfill",))
    backfill = data.get("backfill", False)
    if not isinstance(backfill, bool) and not (
        isinstance(backfill, list) and all(isinstance(name, str) for name in backfill)
    ):
        raise InputError("invalid_backfill", "backfill is true, false or a list of attribute names")
    run = f0.sync(state.runtime, actor, backfill, trigger="ui")
    return _json(run.as_dict(), status=200 if run.outcome == "ok" else 500)


@get("/v1/admin/f0/runs", sync_to_thread=True, opt={"permission": "governance:read"})
def list_runs(request: Request, state: State) -> Response[bytes]:
    """The latest F0 runs with their steps and outcome, newest first."""
    limit = _limit(request.query_params.get("limit"), 50)
    with state.runtime.pool.connection() as conn:
        found = f0.runs(conn, limit)
    return _json({"runs": [run.as_dict() for run in found]})


@get("/v1/admin/policies", sync_to_thread=True, opt={"permission": "governance:write"})
def list_policies(state: State) -> Response[bytes]:
    """Every access-policy row, and the PII attributes a policy can name."""
    with state.runtime.pool.connection() as conn:
        rows = policies.list_policies(conn)
        pii = [d.name for d in attributes.pii_attributes(conn)]
    return _json({"policies": rows, "pii_attributes": [policies.ALL_PII, *pii]})


@put("/v1/admin/policies/{role:str}", sync_to_thread=True, opt={"permission": "governance:write"})
def set_policies(request: Request, state: State, role: str, body: bytes) -> Response[bytes]:
    """Replace a role's policies with `{"attribute": true | false, ...}`."""
    actor = _principal(request).actor
    with state.runtime.pool.connection() as conn:
        rows = policies.set_policies(conn, actor, role, _object(body))
    return _json({"role": role, "policies": rows})


@get("/v1/admin/lineage", sync_to_thread=True, opt={"permission": "governance:read"})
def read_lineage(request: Request, state: State) -> Response[bytes]:
    """The lineage graph as nodes and edges (or `?format=dot`)."""
    graph = lineage.graph(state.runtime)
    if request.query_params.get("format") == "dot":
        return Response(lineage.as_dot(graph).encode(), media_type="text/vnd.graphviz")
    return _json(graph)


@get("/v1/admin/deletions", sync_to_thread=True, opt={"permission": "governance:write"})
def list_deletions(state: State) -> Response[bytes]:
    """Deletion requests, newest first."""
    with state.runtime.pool.connection() as conn:
        return _json({"requests": deletions.deletion_requests(conn)})


@post("/v1/admin/deletions", sync_to_thread=True, opt={"permission": "governance:write"})
def create_deletion(request: Request, state: State, body: bytes) -> Response[bytes]:
    """Record a deletion request `{"reference": ..., "run": true}`; run at once unless
    `run` is false."""
    actor = _principal(request).actor
    data = _object(body, allowed=("reference", "run"))
    if not isinstance(data.get("run", True), bool):
        raise InputError("invalid_run", 'run must be true or false (JSON, not "false")')
    with state.runtime.pool.connection() as conn:
        created = deletions.request_deletion(conn, actor, data.get("reference"))
    if data.get("run", True):
        created = deletions.run_deletion(state.runtime, created["request_id"], actor)
    return _json(created, status=201)


@post(
    "/v1/admin/deletions/{request_id:int}/run",
    sync_to_thread=True,
    status_code=200,
    opt={"permission": "governance:write"},
)
def run_deletion(request: Request, state: State, request_id: int) -> Response[bytes]:
    """Run (or retry after a failure) a recorded deletion request."""
    actor = _principal(request).actor
    return _json(deletions.run_deletion(state.runtime, request_id, actor))


@get("/v1/admin/compliance", sync_to_thread=True, opt={"permission": "audit:read"})
def read_compliance(request: Request, state: State) -> Response[bytes]:
    """The compliance report's data for `since` .. `until` (the last 30 days by default)."""
    until = _time(request.query_params.get("until"), "until") or datetime.now(UTC)
    since = _time(request.query_params.get("since"), "since") or until - DEFAULT_PERIOD
    _ordered(since, until)
    return _json(compliance.compliance_report(state.runtime, since, until))


@get("/v1/admin/audit", sync_to_thread=True, opt={"permission": "audit:read"})
def read_audit(request: Request, state: State) -> Response[bytes]:
    """Audit entries newest first, filtered by since, until, action (a prefix such as
    `attribute.`) and actor; `format=csv` downloads them."""
    params = request.query_params
    unknown = sorted(set(params.keys()) - set(_AUDIT_PARAMETERS))
    if unknown:
        raise InputError(
            "unknown_parameter",
            f"unknown query parameter {', '.join(unknown)}; "
            f"the known ones are {', '.join(_AUDIT_PARAMETERS)}",
        )
    since, until = _time(params.get("since"), "since"), _time(params.get("until"), "until")
    if since and until:
        _ordered(since, until)
    with state.runtime.pool.connection() as conn:
        found = audit.entries(
            conn,
            since=since,
            until=until,
            action_prefix=params.get("action"),
            actor=params.get("actor"),
            limit=_limit(params.get("limit"), 200),
            offset=_limit(params.get("offset"), 0, low=0, name="offset"),
        )
    rows = [{name: getattr(e, name) for name in _AUDIT_COLUMNS} for e in found]
    if params.get("format") == "csv":
        return _csv(rows)
    if params.get("format") not in (None, "json"):
        raise InputError("invalid_format", "format is json or csv")
    return _json({"entries": rows, "count": len(rows)})


#: Every governance route in one Router: Litestar 2.25 wraps a sync handler a second time when
#: another handler of the same path is registered on the app separately (GET and POST of
#: /v1/admin/attributes), and the handler then answers with an unawaited coroutine (a 500);
#: registered together, each is prepared once.
ROUTER = Router(
    path="/",
    route_handlers=[
        list_attributes,
        create_attribute,
        update_attribute,
        retire_attribute,
        run_sync,
        list_runs,
        list_policies,
        set_policies,
        read_lineage,
        list_deletions,
        create_deletion,
        run_deletion,
        read_compliance,
        read_audit,
    ],
)


def route_handlers() -> list[Router]:
    """The governance routes, for the app to mount."""
    return [ROUTER]


def _principal(request: Request) -> Principal:
    """The principal the accounts guard checked; without one (no guard in front) refused."""
    user = request.scope.get("user")
    if not isinstance(user, Principal):
        raise Unauthorized("not_signed_in", "sign in, or send `Authorization: Bearer <token>`")
    return user


def _object(body: bytes, allowed: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The JSON object sent (Decimal numbers kept exact); unknown keys named."""
    try:
        data = decode_any(body or b"null")
    except ValueError:
        raise InputError("invalid_json", "the body is not valid JSON") from None
    if not isinstance(data, Mapping):
        raise InputError("invalid_body", "send a JSON object")
    unknown = sorted(str(key) for key in data if allowed is not None and key not in allowed)
    if unknown:
        raise InputError(
            "unknown_field",
            f"unknown key {', '.join(unknown)}; the body may hold {', '.join(allowed or ())}",
        )
    return dict(data)


def _limit(text: str | None, default: int, low: int = 1, name: str = "limit") -> int:
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not low <= value <= MAX_LIMIT:
        raise InputError(
            f"invalid_{name}", f"{name} must be a whole number, {low} to {MAX_LIMIT:,}"
        )
    return value


def _time(text: str | None, name: str) -> datetime | None:
    if text is None:
        return None
    moment = parse_time(text)
    if moment is None:
        raise InputError(
            f"invalid_{name}",
            f"{name} must be an ISO 8601 time such as 2026-03-01T00:00:00Z or a date",
        )
    return moment


def _ordered(since: datetime, until: datetime) -> None:
    if since >= until:
        raise InputError("invalid_period", "since must be before until")


def _json(value: Any, status: int = 200) -> Response[bytes]:
    return Response(content=encode(value), media_type="application/json", status_code=status)


def _csv(rows: list[dict[str, Any]]) -> Response[bytes]:
    """The entries as CSV (cells that look like formulas are defused by the exporter)."""
    from c360.reports.csv_export import to_csv  # the reports part renders every CSV

    cells = [
        [row[name] if name in ("audit_id", "at") else _cell(row[name]) for name in _AUDIT_COLUMNS]
        for row in rows
    ]
    return Response(
        content=to_csv(_AUDIT_COLUMNS, cells),
        media_type="text/csv",  # Litestar adds the charset
        headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
    )


def _cell(value: Any) -> str | None:
    return None if value is None else value if isinstance(value, str) else encode(value).decode()
