"""Folding text for comparison: lower case, no accents, no punctuation, single spaces.

The original value is always kept next to the folded one; folding only decides what counts as
"the same" (`Nguyễn` and `nguyen`, `Đặng` and `dang`, `O'Brien` and `obrien`).
"""

from __future__ import annotations

import re
import unicodedata

import polars as pl

#: Letters that Unicode does not decompose into a base letter plus a mark.
_UNDECOMPOSED = str.maketrans(
    {
        "đ": "d",
        "ð": "d",
        "ø": "o",
        "ł": "l",
        "ß": "ss",
        "æ": "ae",
        "œ": "oe",
        "þ": "th",
        "ı": "i",
    }
)
_JOINERS = re.compile(r"['’`.]")
_NOT_WORD = re.compile(r"[^0-9a-z]+")


def fold(text: str | None) -> str | None:
    """One value folded; None for a missing or empty value."""
    if text is None:
        return None
    text = unicodedata.normalize("NFKD", str(text).lower()).translate(_UNDECOMPOSED)
    text = "".join(char for char in text if not unicodedata.combining(char))
    text = _JOINERS.sub("", text)
    text = _NOT_WORD.sub(" ", text).strip()
    return text or None


def fold_expr(column: pl.Expr) -> pl.Expr:
    """The same folding as `fold`, as a vectorised polars expression."""
    text = column.cast(pl.String).str.to_lowercase().str.normalize("NFKD")
    for source, target in _UNDECOMPOSED_PAIRS:
        text = text.str.replace_all(source, target, literal=True)
    text = text.str.replace_all(r"\p{M}", "").str.replace_all(r"['’`.]", "")
    text = text.str.replace_all(r"[^0-9a-z]+", " ").str.strip_chars()
    return pl.when(text == "").then(None).otherwise(text)


_UNDECOMPOSED_PAIRS = tuple((chr(k), v) for k, v in _UNDECOMPOSED.items())
