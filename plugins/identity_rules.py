"""Deterministic identity rules: which identifiers an event carries.

userId, anonymousId (also `context.device.id`), email and phone from traits or properties,
and CRM ids from `context.externalIds` or a `crm_id` trait.
"""

from __future__ import annotations

from typing import Any

from c360.events.identifiers import (
    Identifier,
    identifier_id,
    is_placeholder,
    normalise_email,
    normalise_phone,
    unique,
)
from c360.events.model import Event
from c360.hookspecs import hookimpl
from c360.settings import Settings

_EMAIL_KEYS = ("email",)
_PHONE_KEYS = ("phone", "phone_number", "phoneNumber")
_CRM_KEYS = ("crm_id", "crmId")

#: Longest identifier type taken from `context.externalIds`: the type is part of the
#: identifiers table's key, and real types ("crm_id", "hubspot") are short.
_MAX_TYPE_CHARS = 64


@hookimpl
def c360_event_identifiers(event: Event, settings: Settings) -> list[Identifier]:
    """The identifiers an event carries, normalised, placeholders left out."""
    placeholders = settings.placeholder_set
    found: list[Identifier] = []

    def add(kind: str, raw: Any, value: str | None) -> None:
        if value and not is_placeholder(value, placeholders):
            found.append(Identifier(kind, value, str(raw)))

    add("user_id", event.user_id, identifier_id(event.user_id))
    add("anonymous_id", event.anonymous_id, identifier_id(event.anonymous_id))
    if event.type == "alias":
        # alias ties an earlier id to the userId; as a weak identifier it joins an anonymous
        # history to the user but never merges two known customers
        add("anonymous_id", event.previous_id, identifier_id(event.previous_id))
    device = event.context.get("device")
    if isinstance(device, dict) and device.get("id") is not None:
        add("anonymous_id", device["id"], identifier_id(device["id"]))

    for bag in _trait_bags(event):
        for key in _EMAIL_KEYS:
            if key in bag:
                add("email", bag[key], normalise_email(bag[key]))
        for key in _PHONE_KEYS:
            if key in bag:
                add("phone", bag[key], normalise_phone(bag[key], settings.default_region))
        for key in _CRM_KEYS:
            if key in bag:
                add("crm_id", bag[key], identifier_id(bag[key]))

    for external in event.context.get("externalIds") or []:
        if isinstance(external, dict) and external.get("id") is not None:
            kind = str(external.get("type") or "crm_id")
            if len(kind) > _MAX_TYPE_CHARS:
                continue  # a client bug, not a type of identifier
            kind = "crm_id" if kind.lower() in ("crm_id", "crm", "hubspot", "salesforce") else kind
            add(kind, external["id"], identifier_id(external["id"]))

    return unique(found)


def _trait_bags(event: Event) -> list[dict[str, Any]]:
    bags = [event.traits]
    context_traits = event.context.get("traits")
    if isinstance(context_traits, dict):
        bags.append(context_traits)
    if event.type == "identify":
        return bags
    return [*bags, event.properties]
