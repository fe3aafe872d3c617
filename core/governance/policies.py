"""Access policies for personal data, and the masking every reader applies (profile API,
pages and exports alike).

A principal sees a PII attribute or identifier unmasked only when it holds `pii:read` AND a
policy allows its role that attribute (`*pii*` stands for all of them); `admin` (and the
settings' API tokens) see all unless a policy says otherwise. Reads and writes
`governance.access_policies`, audited.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row

from c360 import audit
from c360.access import Principal
from c360.errors import InputError
from c360.governance import attributes

#: The policy row that covers every PII attribute at once.
ALL_PII = "*pii*"
#: Roles that see every PII attribute unless a policy row says otherwise: admin; `api`, the
#: tokens of the `api_tokens` setting, which the F5 API always let read personal data; and
#: `token`, scoped API tokens, whose pii:read scope an admin granted to that token alone.
SEES_ALL_BY_DEFAULT = ("admin", "api", "token")
_MASK = "***"


def list_policies(conn: psycopg.Connection, role: str | None = None) -> list[dict[str, Any]]:
    """Policy rows, by role then attribute."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT role, attribute, allowed, updated_by, updated_at"
            " FROM governance.access_policies WHERE %(role)s::text IS NULL OR role = %(role)s"
            " ORDER BY role, attribute",
            {"role": role},
        ).fetchall()


def set_policies(
    conn: psycopg.Connection, actor: str, role: str, rules: dict[str, Any]
) -> list[dict[str, Any]]:
    """Replace a role's policies with `rules` (attribute or `*pii*` -> allowed), audited."""
    known = {d.name for d in attributes.pii_attributes(conn)} | {ALL_PII}
    unknown = sorted(set(rules) - known)
    if unknown:
        raise InputError(
            "unknown_pii_attribute",
            f"{', '.join(unknown)} is not a PII attribute; policies name PII attributes"
            f" (see /v1/admin/attributes) or {ALL_PII}",
        )
    if not all(isinstance(value, bool) for value in rules.values()):
        raise InputError("invalid_policy", "each attribute maps to true (allowed) or false")
    with conn.transaction():
        found = conn.execute("SELECT 1 FROM governance.roles WHERE name = %s", (role,))
        if found.fetchone() is None:
            raise InputError("unknown_role", f"no role is named {role!r}")
        before = {row["attribute"]: row["allowed"] for row in list_policies(conn, role)}
        conn.execute("DELETE FROM governance.access_policies WHERE role = %s", (role,))
        for attribute, allowed in sorted(rules.items()):
            conn.execute(
                "INSERT INTO governance.access_policies (role, attribute, allowed, updated_by)"
                " VALUES (%s, %s, %s, %s)",
                (role, attribute, allowed, actor),
            )
        audit.record(
            conn,
            actor=actor,
            action="policy.set",
            target=f"role:{role}",
            before=before,
            after=dict(rules),
        )
    return list_policies(conn, role)


def visible_pii(
    conn: psycopg.Connection,
    principal: Principal | None,
    pii: list[attributes.Definition] | None = None,
) -> set[str]:
    """The PII attribute names this principal may see unmasked (`pii`: the PII definitions,
    when the caller has read them already)."""
    if principal is None or not principal.can("pii:read"):
        return set()
    names = {d.name for d in (attributes.pii_attributes(conn) if pii is None else pii)}
    rules = {row["attribute"]: row["allowed"] for row in list_policies(conn, principal.role)}
    everything = rules.get(ALL_PII, principal.role in SEES_ALL_BY_DEFAULT)
    return {name for name in names if rules.get(name, everything)}


def mask_profile(
    conn_or_runtime: Any, principal: Principal | None, doc: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """The document with the PII this principal may not see masked (same shape), and the
    PII attributes it shows unmasked (what a PII-read audit entry records)."""
    masked, shown = mask_profiles(conn_or_runtime, principal, [doc])
    return masked[0], shown


def mask_profiles(
    conn_or_runtime: Any, principal: Principal | None, docs: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[str]]:
    """`mask_profile` for many documents with one read of the policies."""
    with _connection(conn_or_runtime) as conn:
        pii = attributes.pii_attributes(conn)
        visible = visible_pii(conn, principal, pii)
    defined = {d.name for d in pii if not d.built_in}
    shown: set[str] = set()
    out = [_mask(doc, visible, defined, shown) for doc in docs]
    return out, sorted(shown)


def mask_email(value: str) -> str:
    """`lan.nguyen@example.vn` -> `l***@example.vn`."""
    local, at, domain = value.partition("@")
    return f"{local[:1]}{_MASK}@{domain}" if at else mask_text(value)


def mask_phone(value: str) -> str:
    """`+84901234678` -> `+84 *** *** 678`: the country code and the last three digits."""
    digits = re.sub(r"\D", "", value)
    if len(digits) < 6:
        return _MASK
    prefix = f"+{digits[:2]} " if value.strip().startswith("+") else ""
    return f"{prefix}*** *** {digits[-3:]}"


def mask_name(value: str) -> str:
    """`Nguyễn Thị Lan` -> `N. T. L.`."""
    return " ".join(f"{word[0]}." for word in value.split()) or _MASK


def mask_text(value: Any) -> Any:
    """Any other personal value: strings hidden, the shape of lists and objects kept."""
    if isinstance(value, dict):
        return {key: mask_text(item) for key, item in value.items()}
    if isinstance(value, list):
        return [mask_text(item) for item in value]
    return None if value is None else _MASK


_MASKERS = {"email": mask_email, "phone": mask_phone, "name": mask_name}

#: What a channel's address is, as a PII attribute (and its masker's kind): an email, a phone
#: number, a person's id on Zalo, a device's push token. Web chat (a random conversation id)
#: and webhooks (the profile id) address nobody by personal data.
_ADDRESS_ATTRIBUTE = {
    "email": ("id_email", "email"),
    "sms": ("id_phone", "phone"),
    "zalo": ("id_user_id", None),
    "push": ("id_device_id", None),
}


class ContactMasker:
    """Masks the addresses and contact details of customers (notification sends, agent
    conversations) for one principal, as mask_profile masks documents; `shown` lists the
    PII attributes it let through unmasked (what a PII-read audit entry records)."""

    def __init__(self, conn_or_runtime: Any, principal: Principal | None) -> None:
        with _connection(conn_or_runtime) as conn:
            self._visible = visible_pii(conn, principal)
        self._shown: set[str] = set()

    @property
    def shown(self) -> list[str]:
        return sorted(self._shown)

    def address(self, channel: str, value: Any) -> Any:
        """A channel's address, masked unless its attribute is visible."""
        if channel not in _ADDRESS_ATTRIBUTE or value in (None, ""):
            return value
        name, kind = _ADDRESS_ATTRIBUTE[channel]
        return _apply(name, value, self._visible, self._shown, kind)

    def context(self, context: dict[str, Any]) -> dict[str, Any]:
        """An agent conversation's customer snapshot with name, emails and phones masked."""
        out = dict(context)
        if out.get("name"):
            out["name"] = _apply("name", out["name"], self._visible, self._shown)
        for key, name, kind in (("emails", "id_email", "email"), ("phones", "id_phone", "phone")):
            if out.get(key):
                out[key] = [_apply(name, v, self._visible, self._shown, kind) for v in out[key]]
        return out


_TRAIT_ATTRIBUTE = {
    trait: name for name, traits in attributes.PII_TRAITS.items() for trait in traits
}


def _mask(
    doc: dict[str, Any], visible: set[str], defined: set[str], shown: set[str]
) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    for trait, value in (doc.get("traits") or {}).items():
        name = _TRAIT_ATTRIBUTE.get(trait)
        if name is not None and value not in (None, ""):
            out["traits"][trait] = _apply(name, value, visible, shown)
    for trait, others in (out.get("trait_others") or {}).items():
        name = _TRAIT_ATTRIBUTE.get(trait)
        if name is not None:
            for entry in others:
                entry["value"] = _apply(name, entry["value"], visible, shown)
    for name, value in (doc.get("attributes") or {}).items():
        if name in defined and value is not None:
            out["attributes"][name] = _apply(name, value, visible, shown)
    for ident in out.get("identifiers") or []:
        name = f"id_{ident.get('type')}"
        kind = ident.get("type") if ident.get("type") in _MASKERS else None
        for key in ("value", "raw"):
            if key in ident:
                ident[key] = _apply(name, ident[key], visible, shown, kind)
    return out


def _apply(
    name: str, value: Any, visible: set[str], shown: set[str], kind: str | None = None
) -> Any:
    if name in visible:
        shown.add(name)
        return value
    masker = _MASKERS.get(kind or name)
    return masker(value) if masker and isinstance(value, str) else mask_text(value)


@contextmanager
def _connection(conn_or_runtime: Any) -> Iterator[psycopg.Connection]:
    if isinstance(conn_or_runtime, psycopg.Connection):
        yield conn_or_runtime
    else:
        with conn_or_runtime.pool.connection() as conn:
            yield conn
