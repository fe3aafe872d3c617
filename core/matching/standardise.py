"""Standardising raw field values by role, vectorised over a polars frame.

Every field is folded (`fold`) and then shaped by its role: phone numbers to their national
significant digits (the E.164 number without its country code, so `+61 412 345 678` and
`0412 345 678` agree), dates to `YYYYMMDD`, street words to their usual abbreviations, postcodes
and ids without spaces. One record is standardised by the same code on a one-row frame, so
the batch and incremental paths can never disagree.
"""

from __future__ import annotations

import re

import phonenumbers
import polars as pl

from c360.matching.fold import fold, fold_expr
from c360.matching.spec import Field, MatchSpec

#: Street words written both ways in address data; folded to the short form.
_STREET_WORDS = {
    "street": "st",
    "road": "rd",
    "avenue": "ave",
    "av": "ave",
    "boulevard": "blvd",
    "drive": "dr",
    "place": "pl",
    "lane": "ln",
    "court": "ct",
    "crescent": "cres",
    "highway": "hwy",
    "parkway": "pkwy",
    "square": "sq",
    "terrace": "tce",
    "north": "n",
    "south": "s",
    "east": "e",
    "west": "w",
    "first": "1st",
    "second": "2nd",
    "third": "3rd",
}


#: Patterns shared by the vectorised and the one-record paths (Rust and Python regex alike).
_EXTENSION = re.compile(r"(?i)\s*(ext|x)\.?\s*\d+\s*$")
_ISO_DATE = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})")
_DAY_FIRST_DATE = re.compile(r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})")


def standardise(records: pl.DataFrame, spec: MatchSpec) -> pl.DataFrame:
    """One standardised column per field (same names), in the records' row order."""
    country = str(phonenumbers.country_code_for_region(spec.region.upper()) or "")
    return records.select(
        [_standard(pl.col(field.name), field, country).alias(field.name) for field in spec.fields]
    )


def standardise_one(record: dict[str, object], spec: MatchSpec) -> dict[str, str | None]:
    """One record standardised as `standardise` would (the same rules in plain Python: a polars
    frame of one row costs milliseconds, and this runs for every record F3 matches)."""
    country = str(phonenumbers.country_code_for_region(spec.region.upper()) or "")
    return {
        field.name: _standard_one(_text(record.get(field.name)), field, country)
        for field in spec.fields
    }


def _standard_one(value: str | None, field: Field, country: str) -> str | None:
    if value is None:
        return None
    role = field.role
    if role == "email":
        text = value.strip().lower()
        return text if "@" in text else None
    if role == "phone":
        return _phone_one(value, country)
    if role == "date_of_birth":
        return _date_one(value)
    folded = fold(value)
    if folded is None:
        return None
    if role in ("postcode", "national_id", "street_number"):
        return folded.replace(" ", "") or None
    if role in ("address", "text"):
        return " ".join(_STREET_WORDS.get(word, word) for word in folded.split(" "))
    return folded


def _phone_one(value: str, country: str) -> str | None:
    number = _EXTENSION.sub("", value)
    digits = re.sub(r"[^0-9]", "", number)
    digits = digits[2:] if digits.startswith("00") else digits
    if country and digits.startswith(country) and len(digits) >= len(country) + 9:
        digits = digits[len(country) :]
    digits = digits.lstrip("0")
    return digits if len(digits) >= 6 else None


def _date_one(value: str) -> str | None:
    text = value.strip()
    if found := _ISO_DATE.match(text):
        year, month, day = found.groups()
        return year + month.zfill(2) + day.zfill(2)
    if found := _DAY_FIRST_DATE.match(text):
        day, month, year = found.groups()
        return year + month.zfill(2) + day.zfill(2)
    return re.sub(r"[^0-9]", "", text) or None


def _standard(column: pl.Expr, field: Field, country: str) -> pl.Expr:
    role = field.role
    if role == "email":
        text = column.cast(pl.String).str.strip_chars().str.to_lowercase()
        return pl.when(text.str.contains("@")).then(text).otherwise(None)
    if role == "phone":
        return _phone(column, country)
    if role == "date_of_birth":
        return _date(column)
    folded = fold_expr(column)
    if role in ("postcode", "national_id", "street_number"):
        return _blank_to_null(folded.str.replace_all(" ", "", literal=True))
    if role in ("address", "text"):
        return _abbreviate(folded)
    return folded


def _phone(column: pl.Expr, country: str) -> pl.Expr:
    number = column.cast(pl.String).str.replace(_EXTENSION.pattern, "")
    digits = number.str.replace_all(r"[^0-9]", "").str.replace(r"^00", "")
    if country:
        digits = (
            pl.when(
                digits.str.starts_with(country) & (digits.str.len_chars() >= 10 + len(country) - 1)
            )
            .then(digits.str.slice(len(country)))
            .otherwise(digits)
        )
    digits = digits.str.replace(r"^0+", "")
    return pl.when(digits.str.len_chars() >= 6).then(digits).otherwise(None)


def _date(column: pl.Expr) -> pl.Expr:
    """`YYYYMMDD` from `YYYYMMDD`, `YYYY-MM-DD` or day-first `DD/MM/YYYY`; else its digits."""
    text = column.cast(pl.String).str.strip_chars()
    iso = text.str.extract_groups(_ISO_DATE.pattern)
    day_first = text.str.extract_groups(_DAY_FIRST_DATE.pattern)
    return _blank_to_null(
        pl.when(iso.struct.field("1").is_not_null())
        .then(
            iso.struct.field("1")
            + iso.struct.field("2").str.zfill(2)
            + iso.struct.field("3").str.zfill(2)
        )
        .when(day_first.struct.field("1").is_not_null())
        .then(
            day_first.struct.field("3")
            + day_first.struct.field("2").str.zfill(2)
            + day_first.struct.field("1").str.zfill(2)
        )
        .otherwise(text.str.replace_all(r"[^0-9]", ""))
    )


def _abbreviate(folded: pl.Expr) -> pl.Expr:
    words = folded.str.split(" ").list.eval(pl.element().replace(_STREET_WORDS))
    return words.list.join(" ")


def _blank_to_null(text: pl.Expr) -> pl.Expr:
    return pl.when(text == "").then(None).otherwise(text)


def _text(value: object) -> str | None:
    return None if value is None else str(value)
