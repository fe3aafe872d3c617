"""Read knowledge items from CSV and JSON files (or uploaded bytes of either).

CSV: a header row with `id` and `title` (and `type`, unless the caller gives one), optional
`body` and `language`; every other column is an attribute (`price`, `stock`, `valid_from`,
`related` as `a|b`, ...). Column names are read trimmed and in lower case, each at most once;
cells are separated by commas, or by semicolons or tabs when the header line has no comma
(Excel's CSV in Vietnamese and European locales); a quote left open is an error, not a cell
that swallows the rows after it. JSON: an array of objects with id, type, title, body,
language and attributes; JSON Lines (one object a line) also works. Every error names the
file, the line and the field, so an operator can fix the file and load it again; a file with
no items, or with two items of one id, is refused whole. Touches no database.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from c360.errors import InputError
from c360.events.model import decode_any
from c360.knowledge.store import ITEM_TYPES, Item, item_from_dict, refuse_duplicates

#: Columns of a CSV row that are item fields; the rest are attributes.
_ITEM_COLUMNS = ("id", "type", "title", "body", "language")
#: Columns whose cell is one line: a line break there means a quote was left open.
_ONE_LINE_COLUMNS = ("id", "type", "title", "language")
#: Separators taken when the header line has no comma (see `_delimiter`).
_OTHER_DELIMITERS = (";", "\t")
#: Bigger files are split before loading: an upload is held in memory whole.
MAX_FILE_BYTES = 50 * 1024 * 1024


def load_file(path: Path, item_type: str | None = None) -> list[Item]:
    """Items of a .csv, .json or .jsonl file; `item_type` (the CLI's --type) for rows that
    have no type."""
    if not path.is_file():
        raise InputError("invalid_file", f"{path}: no such file")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise InputError("invalid_file", f"{path}: over {MAX_FILE_BYTES:,} bytes; split it")
    return parse(path.read_bytes(), path.name, item_type, type_option="--type")


def demo_catalogue() -> list[Item]:
    """The small bilingual demo catalogue shipped with c360 (c360/knowledge/data): products
    with VND prices, promotions with codes and validity, stores with hours, two personas."""
    data = resources.files("c360.knowledge").joinpath("data/demo_catalogue.json").read_bytes()
    return parse(data, "demo_catalogue.json")


def parse(
    data: bytes,
    name: str,
    item_type: str | None = None,
    kind: str | None = None,
    type_option: str = "the item_type argument",
) -> list[Item]:
    """Items from file bytes; `kind` is 'csv' or 'json' (else told by the name's suffix).
    `type_option` is how the caller's user gives `item_type` ("--type", "?type="), for
    messages that tell them to."""
    if item_type is not None and item_type not in ITEM_TYPES:
        raise InputError(
            "invalid_file",
            f"{item_type} (given with {type_option}) is not a type; use one of "
            f"{', '.join(ITEM_TYPES)}",
        )
    try:
        text = data.decode("utf-8-sig")  # a spreadsheet's byte-order mark is not a column name
    except UnicodeDecodeError as exc:
        raise InputError(
            "invalid_file", f"{name}: byte {exc.start} is not UTF-8; save the file as UTF-8"
        ) from None
    kind = kind or _kind(name)
    if kind == "csv":
        placed = _csv_items(text, name, item_type, type_option)
    elif kind == "json":
        placed = _json_items(text, name, item_type)
    else:
        raise InputError("invalid_file", f"{name}: send a .csv, .json or .jsonl file")
    if not placed:
        raise InputError("empty_file", f"{name}: the file has no items; add at least one")
    refuse_duplicates(placed)
    return [item for _, item in placed]


def parse_csv(text: str, name: str, item_type: str | None = None) -> list[Item]:
    """Items of CSV text; line numbers count the header as line 1."""
    return [item for _, item in _csv_items(text, name, item_type)]


def parse_json(text: str, name: str, item_type: str | None = None) -> list[Item]:
    """Items of a JSON array or of JSON Lines; errors give each object's starting line."""
    return [item for _, item in _json_items(text, name, item_type)]


def _csv_items(
    text: str, name: str, item_type: str | None, type_option: str = "the item_type argument"
) -> list[tuple[str, Item]]:
    """(where, item) of each CSV row; `where` names the line the row starts on."""
    delimiter = _delimiter(text)
    records = _csv_records(text, name, delimiter)
    header = _header(records[0][1] if records else [], name, item_type, type_option)
    items = []
    for line, cells in records[1:]:
        where = f"{name}, line {line}"
        if len(cells) > len(header):
            raise InputError("invalid_file", f"{where}: more cells than the header has columns")
        if cells:  # a blank line is no row
            row = dict(zip(header, cells, strict=False))
            items.append((where, _item(_csv_object(row, where), where, item_type)))
    return items


def _delimiter(text: str) -> str:
    """',' unless the header line has none but has ';' (Excel in locales whose decimal
    mark is a comma, as in Vietnam and most of Europe) or a tab (a sheet copied as text)."""
    first = io.StringIO(text, newline="").readline()
    if "," in first:
        return ","
    return next((sep for sep in _OTHER_DELIMITERS if sep in first), ",")


def _csv_records(text: str, name: str, delimiter: str) -> list[tuple[int, list[str]]]:
    """(first line, cells) of each record. Strict: a quote left open would otherwise take
    every later line into one cell, and rows would vanish without a word."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    records = []
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return records
        except csv.Error as exc:
            raise _csv_error(text, name, line, delimiter, exc) from None
        records.append((line, cells))


def _csv_error(text: str, name: str, first: int, delimiter: str, exc: csv.Error) -> InputError:
    """The csv module's complaint about the record starting on line `first`, placed at the
    line of the quote that broke it when a quote did."""
    opened = _broken_quote_line(text, first, delimiter)
    if opened is None:
        return InputError("invalid_file", f"{name}, line {first}: not valid CSV ({exc})")
    return InputError(
        "invalid_file",
        f"{name}, line {opened}: the quote that opens a cell here is not closed properly "
        f'({exc}); end the cell with a quote, and write a quote inside a cell as two ("")',
    )


def _broken_quote_line(text: str, first: int, delimiter: str) -> int | None:
    """The line where the quoted cell that breaks the record starting on line `first`
    opens, or None if no quote breaks it. The csv module's rules: a quote opens a cell only
    at the cell's start, "" inside is one quote, and a closing quote is followed by the
    separator or the line's end."""
    opened, quoted, at_start, escaped = first, False, True, False
    for number, char, after in _characters(text, first):
        if escaped:
            escaped = False
        elif not quoted and char in "\r\n":
            return None  # the record ended whole
        elif quoted and char == '"' and after == '"':
            escaped = True
        elif quoted and char == '"':
            if after not in ("", delimiter, "\r", "\n"):
                return opened  # text after the closing quote
            quoted = False
        elif at_start and char == '"':
            opened, quoted = number, True
        at_start = not quoted and char == delimiter
    return opened if quoted else None


def _characters(text: str, first: int) -> Iterator[tuple[int, str, str]]:
    """(line number, character, the next character of its line or '') from line `first`
    on, lines split as the csv module's reader splits them."""
    lines = io.StringIO(text, newline="").readlines()
    for number, line in enumerate(lines[first - 1 :], start=first):
        for position, char in enumerate(line):
            yield number, char, line[position + 1 : position + 2]


def _header(cells: list[str], name: str, item_type: str | None, type_option: str) -> list[str]:
    """Column names trimmed and in lower case (a spreadsheet writes "ID" or " id "), each
    once: with two columns of one name, one cell would be dropped unseen."""
    header = [cell.strip().lower() for cell in cells]
    _refuse_repeated_columns(header, name)
    missing = [c for c in ("id", "title") if c not in header]
    if item_type is None and "type" not in header:
        missing.append("type")
    if missing:
        raise InputError("invalid_file", _missing_message(name, cells, missing, type_option))
    return header


def _refuse_repeated_columns(header: list[str], name: str) -> None:
    seen: dict[str, int] = {}
    for number, column in enumerate(header, start=1):
        if column and column in seen:
            raise InputError(
                "invalid_file",
                f"{name}, line 1: column {column} is there twice (columns {seen[column]} and "
                f"{number}); remove one, or rename it",
            )
        seen[column] = number


def _missing_message(name: str, cells: list[str], missing: list[str], type_option: str) -> str:
    message = (
        f"{name}, line 1: missing column {', '.join(missing)} (the header has "
        f"{', '.join(cells) or 'nothing'})"
    )
    if len(cells) == 1:
        return f"{message}; separate the columns with commas (or semicolons, or tabs)"
    if "type" in missing:
        return f"{message}; add a type column, or give the type of every row with {type_option}"
    return f"{message}; add the missing column"


def _json_items(text: str, name: str, item_type: str | None) -> list[tuple[str, Item]]:
    """(where, item) of each element of a JSON array, or of each line of JSON Lines."""
    if not text.lstrip().startswith("["):
        placed = [
            (f"{name}, line {number}", _decode(line, name, number))
            for number, line in enumerate(text.splitlines(), start=1)
            if line.strip()
        ]
    else:
        placed = [(f"{name}, line {line}", value) for line, value in _array_elements(text, name)]
    return [(where, _item(value, where, item_type)) for where, value in placed]


def _item(raw: Any, where: str, item_type: str | None) -> Item:
    if isinstance(raw, Mapping) and item_type is not None:
        given = raw.get("type")
        if given not in (None, "", item_type):
            raise InputError(
                "invalid_item",
                f"{where}: field 'type' is {given} but the load is for {item_type} items",
            )
        raw = {**raw, "type": item_type}
    return item_from_dict(raw, where)


def _csv_object(row: dict[str, str], where: str) -> dict[str, Any]:
    """A CSV row as an item object: item columns at the top, the rest as attributes."""
    for column in _ONE_LINE_COLUMNS:
        if "\n" in row.get(column, "") or "\r" in row.get(column, ""):
            raise InputError(
                "invalid_file",
                f"{where}: the {column} cell runs over several lines, so its opening quote "
                "is closed only rows later; close the quote on this line",
            )
    item: dict[str, Any] = {key: row[key] for key in _ITEM_COLUMNS if key in row}
    item["attributes"] = {
        key: value.strip() for key, value in row.items() if key not in _ITEM_COLUMNS and key
    }
    return item


def _array_elements(text: str, name: str) -> list[tuple[int, Any]]:
    """(line, value) of each element of a top-level JSON array."""
    decoder = json.JSONDecoder(parse_float=str, parse_int=str)
    values = []
    position = text.index("[") + 1
    while True:
        position = _skip(text, position)
        if position < len(text) and text[position] == "]":
            break
        start_line = text.count("\n", 0, position) + 1
        try:
            _, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            raise InputError(
                "invalid_file", f"{name}, line {exc.lineno}: not valid JSON ({exc.msg})"
            ) from None
        values.append((start_line, _decode(text[position:end], name, start_line)))
        position = _skip(text, end)
        if position < len(text) and text[position] == ",":
            position += 1
        elif position >= len(text) or text[position] != "]":
            line = text.count("\n", 0, position) + 1
            raise InputError("invalid_file", f"{name}, line {line}: expected ',' or ']'")
    return values


def _decode(fragment: str, name: str, line: int) -> Any:
    """Plain JSON with fractional numbers as Decimal, so a price stays exact."""
    try:
        return decode_any(fragment)
    except ValueError as exc:
        raise InputError("invalid_file", f"{name}, line {line}: not valid JSON ({exc})") from None


def _skip(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def _kind(name: str) -> str | None:
    lowered = name.lower()
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith((".json", ".jsonl")):
        return "json"
    return None
