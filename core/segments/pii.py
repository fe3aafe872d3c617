"""Filters on personal data: a principal may compare the values of an identifier, a personal
trait or a personal attribute only when it may see them unmasked, or else a filter would
answer what masking hides (`email = lan@example.vn`: is she a customer?). Whether one exists
may always be asked. Reads the access policies and attribute definitions (c360.governance).
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg

from c360.access import Principal
from c360.errors import InputError
from c360.segments.spec import Group, Identifier, Node, Not, Property


class PiiFilterRefused(InputError):
    """The filter compares personal data the principal may not see."""

    status_code = 403


def check_pii_filters(conn: psycopg.Connection, principal: Principal | None, node: Node) -> None:
    """Refuse (403) a filter that compares values of personal data hidden from `principal`.
    Internal callers (no principal) and installs without access policies pass."""
    if principal is None:
        return
    try:
        from c360.governance import attributes, policies
    except ImportError:  # no access policies installed: nothing is masked, nothing to hide
        return
    definitions = attributes.pii_attributes(conn)
    by_trait = {trait: name for name, traits in attributes.PII_TRAITS.items() for trait in traits}
    # a deployment's own personal attribute copied from a trait covers that trait too
    by_trait |= {d.trait: d.name for d in definitions if d.trait and not d.built_in}
    personal = {definition.name for definition in definitions}
    used = {name for name in _compared(node, by_trait) if name in personal}
    hidden = sorted(used - policies.visible_pii(conn, principal))
    if hidden:
        raise PiiFilterRefused(
            "pii_filter_forbidden",
            f"{principal.actor} may not see {', '.join(hidden)}, so may not filter on their "
            "values; filter on whether they exist (op exists), or ask an admin for access",
        )


def _compared(node: Node, by_trait: dict[str, str]) -> Iterator[str]:
    """Names (as the access policies name them) whose values the filter compares."""
    if isinstance(node, Group):
        for child in node.children:
            yield from _compared(child, by_trait)
    elif isinstance(node, Not):
        yield from _compared(node.child, by_trait)
    elif isinstance(node, Identifier) and node.op != "exists":
        yield f"id_{node.type}"
    elif isinstance(node, Property) and node.op != "exists":
        yield by_trait.get(node.name, "") if node.source == "traits" else node.name
