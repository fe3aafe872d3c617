"""Which kinds of report c360 can build, and the builder behind each.

A builder is `builder(runtime, params, principal) -> Report`: it reads through the same service
functions as the pages, as `principal`, so a report shows only what its reader may see (masked
personal data stays masked). Builders register on import of their module; `build` imports the
modules that ship with c360 first, so every built-in kind is known wherever a report is made.

A kind may also have a check, `check(conn, params, principal)`, run when a report is saved or
scheduled: it refuses params its builder would refuse (a bad day, a horizon out of range, a
segment that is not there), so a report does not fail only when it is first rendered.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from datetime import date
from typing import Any

import psycopg

from c360.access import Principal
from c360.errors import InputError
from c360.reports.model import Report
from c360.runtime import Runtime

log = logging.getLogger(__name__)

Builder = Callable[[Runtime, dict[str, Any], Principal], Report]
Check = Callable[[psycopg.Connection, dict[str, Any], Principal], None]

#: Modules whose import registers c360's own builders; a missing one is skipped, so a kind
#: whose module is not written yet is simply unknown.
BUILT_IN_MODULES = (
    "c360.analytics.ltv",  # ltv
    "c360.reports.builders",  # overview, rfm, cohorts
    "c360.reports.kinds",  # segment, compliance
)

_builders: dict[str, Builder] = {}
_checks: dict[str, Check] = {}
_loaded = False


def register(kind: str, builder: Builder, check: Check | None = None) -> None:
    """Make `kind` buildable by `builder`, its params checked on save by `check` when given;
    registering a kind again replaces its builder (and its check, when one is given)."""
    _builders[kind] = builder
    if check is not None:
        _checks[kind] = check


def check(kind: str, conn: psycopg.Connection, params: dict[str, Any], who: Principal) -> None:
    """Refuse `params` that a report of `kind` could not be built with (an InputError saying
    what to change); a kind without a check is built as saved."""
    require_kind(kind)
    checker = _checks.get(kind) or _BUILT_IN_CHECKS.get(kind)
    if checker is not None:
        checker(conn, params, who)


def kinds() -> list[str]:
    """Every kind that can be built, sorted."""
    _load_built_ins()
    return sorted(_builders)


def build(kind: str, runtime: Runtime, params: dict[str, Any], principal: Principal) -> Report:
    """A report of `kind` for `principal`; an unknown kind is an InputError listing the known."""
    require_kind(kind)
    return _builders[kind](runtime, params, principal)


def require_kind(kind: str) -> None:
    """Refuse an unknown kind before it is saved or scheduled."""
    _load_built_ins()
    if kind not in _builders:
        raise InputError(
            "unknown_report_kind",
            f"there is no report kind {kind!r}; choose one of {', '.join(sorted(_builders))}",
        )


def _load_built_ins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name in BUILT_IN_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # the module exists but something it imports does not
                raise
            log.debug("Report module %r is not there; its kinds are unknown.", name)


# -- the checks of the built-in kinds -----------------------------------------------------
# Each reads params as its builder does (through the same parsers), so what passes here is
# what the builder accepts; the builders' modules are not changed to carry them.


def _check_overview(conn: psycopg.Connection, params: dict[str, Any], who: Principal) -> None:
    from c360.analytics.filters import parse_filters

    parse_filters(params)


def _check_rfm(conn: psycopg.Connection, params: dict[str, Any], who: Principal) -> None:
    from c360.analytics.filters import parse_day

    _only(params, ("as_of",))
    as_of = params.get("as_of")
    parse_day(None if as_of is None else str(as_of), "as_of")


def _check_cohorts(conn: psycopg.Connection, params: dict[str, Any], who: Principal) -> None:
    _only(params, ())


def _check_ltv(conn: psycopg.Connection, params: dict[str, Any], who: Principal) -> None:
    from c360.analytics.ltv import check_params

    check_params(params)


def _check_segment(conn: psycopg.Connection, params: dict[str, Any], who: Principal) -> None:
    """segment_id names a saved segment the owner may see; limit is 1 to the report's most."""
    from c360.reports.kinds import MAX_SEGMENT_ROWS
    from c360.segments import service

    _only(params, ("segment_id", "limit"))
    segment_id = _whole(params.get("segment_id"), "segment_id", 1, 2**62)
    _whole(params.get("limit", 200), "limit", 1, MAX_SEGMENT_ROWS)
    service.get_segment(conn, who, segment_id)


def _check_compliance(conn: psycopg.Connection, params: dict[str, Any], who: Principal) -> None:
    _only(params, ("since", "until"))
    since, until = (_day(params.get(name), name) for name in ("since", "until"))
    if since is not None and until is not None and since >= until:
        raise InputError("invalid_period", "since must be before until")


_BUILT_IN_CHECKS: dict[str, Check] = {
    "overview": _check_overview,
    "rfm": _check_rfm,
    "cohorts": _check_cohorts,
    "ltv": _check_ltv,
    "segment": _check_segment,
    "compliance": _check_compliance,
}


def _only(params: dict[str, Any], known: tuple[str, ...]) -> None:
    unknown = sorted(str(name) for name in params if name not in known)
    if unknown:
        raise InputError(
            "unknown_parameter",
            f"unknown report parameter {', '.join(unknown)[:200]}; "
            + (f"the known ones are {', '.join(known)}" if known else "this report takes none"),
        )


def _whole(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(
            "invalid_report_params",
            f"{name} must be a whole number from {low} to {high:,}; got {str(value)[:30]!r}",
        )
    return value


def _day(value: Any, name: str) -> date | None:
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise InputError(
            "invalid_report_params",
            f"{name} is a day written YYYY-MM-DD; got {str(value)[:30]!r}",
        ) from None
