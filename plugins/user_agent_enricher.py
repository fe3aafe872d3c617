"""User-agent enrichment: browser, OS and device parsed from `context.userAgent`."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import ua_parser

from c360.events.model import Event
from c360.hookspecs import hookimpl
from c360.settings import Settings


@hookimpl
def c360_enrich_event(event: Event, client_ip: str | None, settings: Settings) -> None:
    """Set `context.userAgentParsed` when the event carries a user agent."""
    agent = event.context.get("userAgent")
    if isinstance(agent, str) and agent:
        event.context["userAgentParsed"] = parse(agent[:1024])


@lru_cache(maxsize=16_384)
def parse(agent: str) -> dict[str, Any]:
    """Browser, OS and device families and versions of one user-agent string."""
    result = ua_parser.parse(agent)
    parsed: dict[str, Any] = {}
    if result.user_agent:
        parsed["browser"] = result.user_agent.family
        parsed["browserVersion"] = result.user_agent.major
    if result.os:
        parsed["os"] = result.os.family
        parsed["osVersion"] = result.os.major
    if result.device:
        parsed["device"] = result.device.family
    return parsed
