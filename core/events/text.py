"""Text hygiene: stored text is valid Unicode in NFC; undecodable input is replaced, not fatal."""

from __future__ import annotations

import json
import unicodedata
from decimal import Decimal
from typing import Any

from c360.errors import InputError

#: How much of an unreadable value a warning repeats.
_SHOWN_CHARS = 100


def lenient_json(data: bytes) -> Any:
    """Parse JSON that strict decoders refuse for its text: bad UTF-8, lone surrogates.

    Bare NaN / Infinity are still refused: they are not JSON.
    """
    text = data.decode("utf-8", errors="replace")
    try:
        parsed = json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise InputError("invalid_json", f"the body is not valid JSON: {exc}") from exc
    except RecursionError:  # callers check depth first; this keeps any miss a 400, not a 500
        raise InputError(
            "too_deeply_nested", "the body nests objects or arrays too deeply to read"
        ) from None
    return clean(parsed)


def shown(value: Any) -> str:
    """A value as sent, cut to a length a warning can carry (enough to recognise it)."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "..."


def clean(value: Any) -> Any:
    """Every string inside `value` made valid Unicode and NFC."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(str(k)): clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(item) for item in value]
    return value


def clean_text(text: str) -> str:
    """Lone surrogates and NUL become U+FFFD; the result is NFC."""
    if "\x00" in text:  # PostgreSQL text and jsonb cannot hold U+0000
        text = text.replace("\x00", "\ufffd")
    if not text.isascii():
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        if not unicodedata.is_normalized("NFC", text):
            text = unicodedata.normalize("NFC", text)
    return text


def needs_cleaning(raw: bytes) -> bool:
    """True when strictly decoded JSON `raw` may hold text to fix: a `\\u` escape (which can
    spell NUL or a lone surrogate) or text that is not NFC. Valid UTF-8 is already checked
    by the strict decoder; NFC is checked on the whole document at C speed, which is enough
    because every JSON string starts after a quote, a starter that nothing composes with."""
    if b"\\u" in raw:
        return True
    if raw.isascii():
        return False
    try:
        return not unicodedata.is_normalized("NFC", raw.decode("utf-8"))
    except UnicodeDecodeError:
        return True


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")
