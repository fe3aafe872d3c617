"""Standardising raw field values by role, vectorised over a polars frame.

Every field is folded (`fold`) and then shaped by its role: phone numbers to E.164 (`+`,
country code, national number: `+61 412 345 678`, `0412 345 678` and `0061412345678` all become
`+61412345678`; a number written without a country code takes the region's, and its trunk
prefix 0 is dropped), dates to `YYYYMMDD`, street words to their usual abbreviations, postcodes
and ids without spaces. `standardise_one` applies the same rules to one record in plain Python
(a test holds the two paths to the same answers), so batch and incremental matching agree.
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


#: National numbers are at least this long (shorter: an extension, a typo, a placeholder) ...
_MIN_DIGITS = 6
#: ... and a number written with its country code but no "+" has at least this many more.
_NATIONAL_DIGITS = 9

#: Patterns shared by the vectorised and the one-record paths (Rust and Python regex alike).
_NOT_NUMBER = re.compile(r"[^0-9.\-]")
_EXTENSION = re.compile(r"(?i)\s*(ext|x)\.?\s*\d+\s*$")
_ISO_DATE = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})")
_DAY_FIRST_DATE = re.compile(r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})")


def standardise(records: pl.DataFrame, spec: MatchSpec) -> pl.DataFrame:
    """One standardised column per field (same names), in the records' row order."""
    dialing = _dialing(spec.region)
    return records.select(
        [_standard(pl.col(field.name), field, dialing).alias(field.name) for field in spec.fields]
    )


def standardise_one(record: dict[str, object], spec: MatchSpec) -> dict[str, str | None]:
    """One record standardised as `standardise` would (the same rules in plain Python: a polars
    frame of one row costs milliseconds, and this runs for every record F3 matches)."""
    dialing = _dialing(spec.region)
    return {
        field.name: _standard_one(_text(record.get(field.name)), field, dialing)
        for field in spec.fields
    }


def _standard_one(value: str | None, field: Field, dialing: tuple[str, str]) -> str | None:
    if value is None:
        return None
    role = field.role
    if role == "email":
        text = value.strip().lower()
        return text if "@" in text else None
    if role == "phone":
        return _phone_one(value, *dialing)
    if role == "date_of_birth":
        return _date_one(value)
    if role == "number":
        return _NOT_NUMBER.sub("", value) or None
    folded = fold(value)
    if folded is None:
        return None
    if role in ("postcode", "national_id", "street_number"):
        return folded.replace(" ", "") or None
    if role in ("address", "text"):
        return " ".join(_STREET_WORDS.get(word, word) for word in folded.split(" "))
    return folded


def _dialing(region: str) -> tuple[str, str]:
    """The region's country code and the prefix its callers dial before another country's
    (`00` in most places, `0011` in Australia, `011` in North America)."""
    region = region.upper()
    country = str(phonenumbers.country_code_for_region(region) or "")
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    exit_code = "00"
    if metadata is not None:
        preferred = metadata.preferred_international_prefix or metadata.international_prefix
        if preferred and preferred.isdigit():
            exit_code = preferred
    return country, exit_code


def _phone_one(value: str, country: str, exit_code: str) -> str | None:
    number = _EXTENSION.sub("", value).strip()
    digits = re.sub(r"[^0-9]", "", number)
    international = number.startswith("+") or digits.startswith((exit_code, "00"))
    if digits.startswith(exit_code):
        digits = digits[len(exit_code) :]
    elif digits.startswith("00"):
        digits = digits[2:]
    written_with_code = (
        digits.startswith(country) and len(digits) >= len(country) + _NATIONAL_DIGITS
    )
    national = digits.lstrip("0")
    if len(national) < _MIN_DIGITS:
        return None
    return "+" + digits if international or written_with_code else "+" + country + national


def _date_one(value: str) -> str | None:
    text = value.strip()
    if found := _ISO_DATE.match(text):
        year, month, day = found.groups()
        return year + month.zfill(2) + day.zfill(2)
    if found := _DAY_FIRST_DATE.match(text):
        day, month, year = found.groups()
        return year + month.zfill(2) + day.zfill(2)
    return re.sub(r"[^0-9]", "", text) or None


def _standard(column: pl.Expr, field: Field, dialing: tuple[str, str]) -> pl.Expr:
    role = field.role
    if role == "email":
        text = column.cast(pl.String).str.strip_chars().str.to_lowercase()
        return pl.when(text.str.contains("@")).then(text).otherwise(None)
    if role == "phone":
        return _phone(column, *dialing)
    if role == "date_of_birth":
        return _date(column)
    if role == "number":
        return _blank_to_null(column.cast(pl.String).str.replace_all(_NOT_NUMBER.pattern, ""))
    folded = fold_expr(column)
    if role in ("postcode", "national_id", "street_number"):
        return _blank_to_null(folded.str.replace_all(" ", "", literal=True))
    if role in ("address", "text"):
        return _abbreviate(folded)
    return folded


def _phone(column: pl.Expr, country: str, exit_code: str) -> pl.Expr:
    number = column.cast(pl.String).str.replace(_EXTENSION.pattern, "").str.strip_chars()
    digits = number.str.replace_all(r"[^0-9]", "")
    international = (
        number.str.starts_with("+")
        | digits.str.starts_with(exit_code)
        | digits.str.starts_with("00")
    )
    digits = (
        pl.when(digits.str.starts_with(exit_code))
        .then(digits.str.slice(len(exit_code)))
        .when(digits.str.starts_with("00"))
        .then(digits.str.slice(2))
        .otherwise(digits)
    )
    written_with_code = digits.str.starts_with(country) & (
        digits.str.len_chars() >= len(country) + _NATIONAL_DIGITS
    )
    national = digits.str.replace(r"^0+", "")
    e164 = (
        pl.when(international | written_with_code)
        .then(pl.lit("+") + digits)
        .otherwise(pl.lit("+" + country) + national)
    )
    return pl.when(national.str.len_chars() >= _MIN_DIGITS).then(e164).otherwise(None)


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
