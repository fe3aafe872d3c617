"""Which kinds of report c360 can build, and the builder behind each.

A builder is `builder(runtime, params, principal) -> Report`: it reads through the same service
functions as the pages, as `principal`, so a report shows only what its reader may see (masked
personal data stays masked). Builders register on import of their module; `build` imports the
modules that ship with c360 first, so every built-in kind is known wherever a report is made.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

from c360.access import Principal
from c360.errors import InputError
from c360.reports.model import Report
from c360.runtime import Runtime

log = logging.getLogger(__name__)

Builder = Callable[[Runtime, dict[str, Any], Principal], Report]

#: Modules whose import registers c360's own builders; a missing one is skipped, so a kind
#: whose module is not written yet is simply unknown.
BUILT_IN_MODULES = (
    "c360.analytics.ltv",  # ltv
    "c360.reports.builders",  # overview, rfm, cohorts
    "c360.reports.kinds",  # segment, compliance
)

_builders: dict[str, Builder] = {}
_loaded = False


def register(kind: str, builder: Builder) -> None:
    """Make `kind` buildable by `builder`; registering a kind again replaces its builder."""
    _builders[kind] = builder


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
