"""The grounding check: every price, amount, quantity, date, time and promotion code a reply
states must appear in the evidence it was written from (the retrieved facts, the customer's
profile snapshot, the persona), or the reply is not sent.

Claims are read in English and Vietnamese formats: "1.290.000 ₫", "1,290,000 VND", "1,29 triệu",
"$19.99", "20%", "12/05", "12/05/2026", "2026-05-12", "5 May", "May 5, 2026", "ngày 5 tháng 5",
"8:00", "8h30", "10pm", and codes such as "TET2026" or "code SUMMER". A number written in a
way that reads two ways ("1.290" is 1290 in Vietnam and 1.29 in English) is grounded when
either reading is in the evidence. Email addresses and phone numbers are c360.agents.safety's
to check and are left out here. Pure functions: no database, no network.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

#: What a claim is about; the check compares claims with evidence of the same kind.
KINDS = ("number", "date", "time", "code")

_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}
_MONTH = "|".join(sorted(_MONTHS, key=len, reverse=True))

#: Words that scale the number before them ("1,29 triệu" is 1,290,000).
_SCALES = {
    "k": Decimal(1000),
    "nghìn": Decimal(1000),
    "ngàn": Decimal(1000),
    "nghin": Decimal(1000),
    "ngan": Decimal(1000),
    "thousand": Decimal(1000),
    "triệu": Decimal(10) ** 6,
    "trieu": Decimal(10) ** 6,
    "tr": Decimal(10) ** 6,
    "million": Decimal(10) ** 6,
    "m": Decimal(10) ** 6,
    "tỷ": Decimal(10) ** 9,
    "tỉ": Decimal(10) ** 9,
    "ty": Decimal(10) ** 9,
    "billion": Decimal(10) ** 9,
    "bn": Decimal(10) ** 9,
}
_SCALE = "|".join(sorted((re.escape(word) for word in _SCALES), key=len, reverse=True))

#: Upper-case words that are not codes even though they look like one.
NOT_CODES = frozenset(
    {"VND", "VNĐ", "USD", "EUR", "SMS", "ZALO", "HTTP", "HTTPS", "FAQ", "NOTE", "ASAP", "SKU"}
)

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(r"https?://\S+")
# phone numbers start with + or 0, which amounts written with separators never do
_PHONE = re.compile(r"(?<![\w.,])(?:\+\d[\d .()-]{7,}\d|0\d(?:[ .-]?\d){7,10})(?![\w])")
#: "mã" (code) alone or as "mã giảm giá", "mã khuyến mãi", "mã ưu đãi"
_VI_CODE_WORD = r"mã(?:\s+(?:giảm\s+giá|khuyến\s+mãi|ưu\s+đãi))?"
_CODE_AFTER_WORD = re.compile(
    rf"(?i:\b(?:code|coupon|voucher|promo|{_VI_CODE_WORD}|ma)"
    r"\s*[:\"'“]?\s*)([A-Za-z0-9][A-Za-z0-9_-]{2,})"
)
_CODE = re.compile(
    r"(?<![\w-])(?=[A-Z0-9_-]*\d)(?=[A-Z0-9_-]*[A-Z])[A-Z0-9][A-Z0-9_-]{2,}(?![\w-])"
)
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ][\d:.]+(?:Z|[+-]\d{2}:?\d{2})?)?\b")
_NUMERIC_DATE = re.compile(r"(?<![\d.,/])(\d{1,2})[/-](\d{1,2})(?:[/-](\d{4}|\d{2}))?(?![\d/])")
_DOTTED_DATE = re.compile(r"(?<![\d.,])(\d{1,2})\.(\d{1,2})\.(\d{4})(?![\d.])")
_DAY_MONTH = re.compile(
    rf"(?i)\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({_MONTH})\.?(?:,?\s+(\d{{4}}))?\b"
)
_MONTH_DAY = re.compile(rf"(?i)\b({_MONTH})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?(?:,?\s+(\d{{4}}))?\b")
_VI_YEAR = r"(?:\s+(?:năm|nam)\s+(\d{4}))?"
_VI_DATE = re.compile(
    rf"(?i)(?:ngày\s+|ngay\s+)?(\d{{1,2}})\s+(?:tháng|thang)\s+(\d{{1,2}}){_VI_YEAR}"
)
_CLOCK = re.compile(r"(?<![\d.,])([01]?\d|2[0-3])\s*[:h]\s*([0-5]\d)(?:\s*(am|pm))?(?![\d])", re.I)
_HOUR = re.compile(
    r"(?<![\d.,])(1[0-2]|0?\d)\s*(am|pm)\b|(?<![\d.,])([01]?\d|2[0-3])h(?![\w])", re.I
)
_NUMBER = re.compile(
    rf"(?<![\w.,])(\d{{1,3}}(?:([.,])\d{{3}})(?:\2\d{{3}})*(?:[.,]\d+)?|\d+(?:[.,]\d+)?)"
    rf"(?:\s*({_SCALE})(?![\w]))?(?![\w])",
    re.I,
)
_LIST_MARKER = re.compile(r"(?m)^\s*\d{1,2}[.)]\s")


#: Date formats with how each reads into (day, month, year); year 0 when none is written.
_DATE_READERS: tuple[tuple[re.Pattern[str], Any], ...] = (
    (_ISO_DATE, lambda g: [(int(g[2]), int(g[1]), int(g[0]))]),
    (_DAY_MONTH, lambda g: [(int(g[0]), _MONTHS[g[1].lower()], _year(g[2]))]),
    (_MONTH_DAY, lambda g: [(int(g[1]), _MONTHS[g[0].lower()], _year(g[2]))]),
    (_VI_DATE, lambda g: [(int(g[0]), int(g[1]), _year(g[2]))]),
    (_DOTTED_DATE, lambda g: [(int(g[0]), int(g[1]), _year(g[2]))]),
    # day first, as Vietnam and most of the world write it; month first only when the
    # day-first reading is impossible ("05/13")
    (
        _NUMERIC_DATE,
        lambda g: [(int(g[0]), int(g[1]), _year(g[2])), (int(g[1]), int(g[0]), _year(g[2]))],
    ),
)


@dataclasses.dataclass(frozen=True)
class Claim:
    """One checkable statement in a text: a number, date, time or code, as written, with the
    values it may mean."""

    kind: str
    text: str
    values: frozenset[Any]


@dataclasses.dataclass
class Evidence:
    """Values a reply may state: numbers, dates (day, month, year), times (hour, minute) and
    codes (upper case)."""

    numbers: set[Decimal] = dataclasses.field(default_factory=set)
    dates: set[tuple[int, int, int]] = dataclasses.field(default_factory=set)
    times: set[tuple[int, int]] = dataclasses.field(default_factory=set)
    codes: set[str] = dataclasses.field(default_factory=set)

    def add_text(self, text: str) -> None:
        """Everything a text states counts as evidence, its words as possible codes."""
        for claim in claims(text):
            self._add_claim(claim)
        self.codes.update(word.upper() for word in re.findall(r"[\w-]+", text))

    def add_value(self, value: Any) -> None:
        """A structured value (an attribute, a profile field): numbers, ISO dates, texts,
        and the members of lists and mappings."""
        if isinstance(value, bool) or value is None:
            return
        if isinstance(value, int | float | Decimal):
            self.numbers.add(_decimal(value))
        elif isinstance(value, str):
            self.add_text(value)
        elif isinstance(value, date):
            self.dates.add((value.day, value.month, value.year))
        elif isinstance(value, Mapping):
            for item in value.values():
                self.add_value(item)
        elif isinstance(value, list | tuple | set | frozenset):
            for item in value:
                self.add_value(item)

    def supports(self, claim: Claim) -> bool:
        """Whether one of the claim's readings is in the evidence."""
        if claim.kind == "number":
            return bool(claim.values & self.numbers)
        if claim.kind == "time":
            return bool(claim.values & self.times)
        if claim.kind == "code":
            return bool(claim.values & self.codes)
        return any(self._has_date(day, month, year) for day, month, year in claim.values)

    def _has_date(self, day: int, month: int, year: int) -> bool:
        # a date written without a year ("5 May") matches the evidence's date in any year
        return any(d == day and m == month and (year == 0 or y == year) for d, m, y in self.dates)

    def _add_claim(self, claim: Claim) -> None:
        if claim.kind == "number":
            self.numbers.update(claim.values)
        elif claim.kind == "time":
            self.times.update(claim.values)
        elif claim.kind == "code":
            self.codes.update(claim.values)
        else:
            for day, month, year in claim.values:
                self.dates.add((day, month, year))
                # the parts of a date may be restated alone ("valid until the 31st, 2026")
                self.numbers.update({Decimal(day), Decimal(month)})
                if year:
                    self.numbers.add(Decimal(year))


@dataclasses.dataclass(frozen=True)
class Check:
    """The outcome: grounded, or the claims nothing supports."""

    grounded: bool
    unsupported: tuple[Claim, ...] = ()

    @property
    def reason(self) -> str:
        """The unsupported claims as written, for logs and the turn's flags."""
        return ", ".join(repr(claim.text) for claim in self.unsupported)


def evidence(texts: Iterable[str] = (), values: Iterable[Any] = ()) -> Evidence:
    """Evidence from free texts (fact titles and bodies) and structured values."""
    found = Evidence()
    for text in texts:
        found.add_text(text)
    for value in values:
        found.add_value(value)
    return found


def check(reply: str, against: Evidence) -> Check:
    """Whether every claim in `reply` is supported by `against`."""
    unsupported = tuple(claim for claim in claims(reply) if not against.supports(claim))
    return Check(grounded=not unsupported, unsupported=unsupported)


def claims(text: str) -> list[Claim]:
    """ISO dates, codes, other dates, times and numbers stated in `text`, in that order of
    reading: each claim's characters are blanked before the next kind is read, so "TET2026"
    is a code and not also the number 2026, and "2026-05-31T23:59" is a date, not a code."""
    text = _blank(text, [_URL, _EMAIL, _PHONE, _LIST_MARKER])
    found: list[Claim] = []
    text = _read_dates(text, found, _DATE_READERS[:1])
    text = _read_codes(text, found)
    text = _read_dates(text, found, _DATE_READERS[1:])
    text = _read_times(text, found)
    for match in _NUMBER.finditer(text):
        values = _number_readings(match.group(1), match.group(3))
        if values:
            found.append(Claim("number", match.group(0).strip(), frozenset(values)))
    return found


def _read_codes(text: str, found: list[Claim]) -> str:
    spans = []
    for match in _CODE_AFTER_WORD.finditer(text):
        word = match.group(1)
        if _looks_like_code(word):
            found.append(Claim("code", word, frozenset({word.upper()})))
            spans.append(match.span(1))
    for match in _CODE.finditer(text):
        if match.group(0) not in NOT_CODES and not any(a <= match.start() < b for a, b in spans):
            found.append(Claim("code", match.group(0), frozenset({match.group(0).upper()})))
            spans.append(match.span())
    return _blank_spans(text, spans)


def _looks_like_code(word: str) -> bool:
    """A word after "code"/"mã" is a code when it is not an ordinary lower-case word."""
    return word.upper() not in NOT_CODES and (word.isupper() or any(c.isdigit() for c in word))


def _read_dates(
    text: str, found: list[Claim], readers: tuple[tuple[re.Pattern[str], Any], ...]
) -> str:
    spans: list[tuple[int, int]] = []
    for pattern, read in readers:
        for match in pattern.finditer(text):
            if any(a < match.end() and match.start() < b for a, b in spans):
                continue
            readings = [r for r in read(match.groups()) if _valid_date(*r)]
            if readings:
                found.append(Claim("date", match.group(0).strip(), frozenset(readings[:1])))
                spans.append(match.span())
        text = _blank_spans(text, spans)
    return text


def _read_times(text: str, found: list[Claim]) -> str:
    spans = []
    for match in _CLOCK.finditer(text):
        hour = _hour(int(match.group(1)), match.group(3))
        found.append(
            Claim("time", match.group(0).strip(), frozenset({(hour, int(match.group(2)))}))
        )
        spans.append(match.span())
    text = _blank_spans(text, spans)
    for match in _HOUR.finditer(text):
        # "10pm" or "8h" (Vietnamese for 8 o'clock)
        hour = _hour(int(match.group(1)), match.group(2)) if match.group(1) else int(match.group(3))
        found.append(Claim("time", match.group(0).strip(), frozenset({(hour, 0)})))
        spans.append(match.span())
    return _blank_spans(text, spans)


def _hour(hour: int, meridiem: str | None) -> int:
    if not meridiem:
        return hour
    if meridiem.lower() == "pm":
        return hour % 12 + 12
    return hour % 12


def _number_readings(token: str, scale: str | None) -> set[Decimal]:
    """The values a written number may mean, scaled by a following word."""
    token = token.strip()
    readings: set[Decimal] = set()
    separators = [c for c in token if c in ".,"]
    if not separators:
        readings.add(Decimal(token))
    elif len(set(separators)) == 1 and len(separators) > 1:
        readings.add(Decimal(re.sub(r"[.,]", "", token)))  # 1.290.000 / 1,290,000
    elif len(set(separators)) == 2 and token[-1].isdigit():
        decimal_mark = separators[-1]  # 1.290.000,50 / 1,290,000.50
        whole, fraction = token.rsplit(decimal_mark, 1)
        readings.add(Decimal(re.sub(r"[.,]", "", whole) + "." + fraction))
    else:
        whole, fraction = re.split(r"[.,]", token, maxsplit=1)
        readings.add(Decimal(f"{whole}.{fraction}"))  # 19.99 / 1,5
        if len(fraction) == 3:
            readings.add(Decimal(whole + fraction))  # 1.290 / 1,290
    if scale:
        factor = _SCALES[scale.lower()]
        readings = {value * factor for value in readings}
    return {_normal(value) for value in readings}


def _normal(value: Decimal) -> Decimal:
    """One representative per number: 1290000, 1.29E+6 and 1290000.00 compare equal but
    hash differently as Decimals with exponents; normalise before sets meet."""
    if not value.is_finite():
        return value  # infinity or NaN: nothing a reply can state, nothing to scale
    normal = value.normalize()
    try:
        return normal.quantize(Decimal(1)) if normal == normal.to_integral_value() else normal
    except InvalidOperation:
        # more digits than the context's precision (a catalogue's 1E+309): the normalised
        # form is already one representative per number
        return normal


def _decimal(value: int | float | Decimal) -> Decimal:
    try:
        return _normal(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return Decimal(0)


def _year(text: str | None) -> int:
    if not text:
        return 0  # no year written
    year = int(text)
    return year + 2000 if year < 100 else year


def _valid_date(day: int, month: int, year: int) -> bool:
    try:
        date(year or 2000, month, day)  # 2000 was a leap year: 29 February reads as a date
    except ValueError:
        return False
    return True


def _blank(text: str, patterns: Iterable[re.Pattern[str]]) -> str:
    for pattern in patterns:
        text = pattern.sub(lambda m: " " * len(m.group(0)), text)
    return text


def _blank_spans(text: str, spans: list[tuple[int, int]]) -> str:
    chars = list(text)
    for start, end in spans:
        chars[start:end] = " " * (end - start)
    return "".join(chars)
