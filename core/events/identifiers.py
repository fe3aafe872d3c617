"""Identifiers: the typed values that tie an event to a person, normalised for matching.

The raw value is kept as sent; the normalised one is what matches. A value that cannot be
normalised, or is a placeholder ("null", "guest", "0", ...), is not an identifier.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

import msgspec
import phonenumbers

#: Identifier types in the order F3 trusts them when choosing the surviving profile.
PRIORITY = ("user_id", "crm_id", "email", "phone", "anonymous_id")

#: Types of which a profile may hold only one value: two different ones never merge.
UNIQUE_PER_PROFILE = frozenset({"user_id", "crm_id"})

#: Trust levels: strong identifiers may merge profiles; weak ones only attach anonymous ones.
STRONG, WEAK = 2, 1
TRUST = {
    "user_id": STRONG,
    "crm_id": STRONG,
    "email": STRONG,
    "phone": STRONG,
    "anonymous_id": WEAK,
}

#: Longest id that identifies anyone: identifiers are a btree key in PostgreSQL, whose rows are
#: limited to about 2.7 KB; 256 characters is 1 KB even in 4-byte UTF-8, and no real id is longer.
MAX_ID_CHARS = 256

#: Longest email address that can be delivered (RFC 5321's path limit less the angle brackets).
MAX_EMAIL_CHARS = 254

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ZEROS_AND_DASHES = re.compile(r"^[0\-_.\s]*$")


class Identifier(msgspec.Struct, frozen=True, array_like=True):
    """One identifier seen on an event."""

    type: str
    value: str
    raw: str

    @property
    def trust(self) -> int:
        """How far this identifier may be trusted to merge profiles."""
        return TRUST.get(self.type, WEAK)


def is_placeholder(value: str, placeholders: frozenset[str]) -> bool:
    """True for junk values that must never identify anyone."""
    folded = value.strip().lower()
    return folded in placeholders or bool(_ZEROS_AND_DASHES.match(folded))


def normalise_id(value: object) -> str | None:
    """A user or device id as text: ints become digits, NFC, trimmed; others are refused."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, str):
        return None
    return unicodedata.normalize("NFC", value.strip()) or None


def identifier_id(value: object) -> str | None:
    """A user, device or CRM id as an identifier: `normalise_id`, but None when it is longer
    than MAX_ID_CHARS (no real id is; a longer one cannot be stored as a key)."""
    normalised = normalise_id(value)
    return normalised if normalised and len(normalised) <= MAX_ID_CHARS else None


def normalise_email(value: object) -> str | None:
    """Trimmed and lower-cased, when it looks like an address no longer than MAX_EMAIL_CHARS."""
    if not isinstance(value, str):
        return None
    email = unicodedata.normalize("NFC", value.strip()).lower()
    return email if len(email) <= MAX_EMAIL_CHARS and _EMAIL.match(email) else None


def normalise_phone(value: object, region: str) -> str | None:
    """E.164, reading numbers without a country code in `region`; None when not a number."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        number = phonenumbers.parse(value, region.upper())
    except phonenumbers.NumberParseException:
        return None
    # Valid, not merely possible: "0000000000" has a possible length but is nobody's number.
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def unique(identifiers: Iterable[Identifier]) -> list[Identifier]:
    """Identifiers without repeats of the same (type, value), first kept."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for identifier in identifiers:
        if (identifier.type, identifier.value) in seen:
            continue
        seen.add((identifier.type, identifier.value))
        kept.append(identifier)
    return kept
