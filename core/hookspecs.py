"""The hooks c360 calls. Built-in features implement them exactly as outside plugins do.

An outside plugin registers a module or object under the entry-point group `c360` and
implements any of these with `@c360.hookimpl`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from c360.channels.base import Channel
    from c360.events.identifiers import Identifier
    from c360.events.model import Event
    from c360.settings import Settings

PROJECT = "c360"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def c360_enrich_event(event: Event, client_ip: str | None, settings: Settings) -> None:
    """Add derived facts to an accepted event in place (geo, device, campaign...)."""


@hookspec
def c360_event_identifiers(event: Event, settings: Settings) -> list[Identifier]:
    """Return the identifiers an event carries, normalised; placeholders left out."""


@hookspec
def c360_profile_match_fields() -> list[tuple[str, str, list[str]]]:
    """Return (field, role, trait paths) the probabilistic matcher compares profiles on."""
    # e.g. ("first_name", "given_name", ["firstName", "first_name"]); a path may go into a
    # nested trait, "address.city"; roles are those of c360.matching.spec.ROLE_KIND


@hookspec
def c360_profile_attributes(profile: dict[str, Any], event: Event) -> dict[str, Any] | None:
    """Return attributes to set on a profile after `event` was applied to it."""


@hookspec
def c360_channels(settings: Settings) -> list[Channel]:
    """Return the channels (SMS, Zalo, email...) a plugin provides that `settings` configure."""
    # agents and F4 notifications send through them (c360.channels.base.Channel)


@hookspec
def c360_connectors() -> list[Any]:
    """Return the CRM, ERP or channel connectors a plugin provides."""
