"""Read knowledge items from CSV and JSON files (or uploaded bytes of either).

CSV: a header row with `id` and `title` (and `type`, unless the caller gives one), optional
`body` and `language`; every other column is an attribute (`price`, `stock`, `valid_from`,
`related` as `a|b`, ...). JSON: an array of objects with id, type, title, body, language and
attributes; JSON Lines (one object a line) also works. Every error names the file, the line
and the field, so an operator can fix the file and load it again; a file with no items, or
with two items of one id, is refused whole. Touches no database.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from c360.errors import InputError
from c360.events.model import decode_any
from c360.knowledge.store import ITEM_TYPES, Item, item_from_dict, refuse_duplicates

#: Columns of a CSV row that are item fields; the rest are attributes.
_ITEM_COLUMNS = ("id", "type", "title", "body", "language")
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
    """(where, item) of each CSV row."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    missing = [c for c in ("id", "title") if c not in header]
    if item_type is None and "type" not in header:
        missing.append("type")
    if missing:
        raise InputError(
            "invalid_file",
            f"{name}, line 1: missing column {', '.join(missing)} (the header has "
            f"{', '.join(header) or 'nothing'}); add a type column, or give the type of "
            f"every row with {type_option}",
        )
    items = []
    for row in reader:
        where = f"{name}, line {reader.line_num}"
        if None in row:
            raise InputError("invalid_file", f"{where}: more cells than the header has columns")
        items.append((where, _item(_csv_object(row), where, item_type)))
    return items


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


def _csv_object(row: dict[str, str]) -> dict[str, Any]:
    """A CSV row as an item object: item columns at the top, the rest as attributes."""
    item: dict[str, Any] = {key: row[key] for key in _ITEM_COLUMNS if key in row}
    item["attributes"] = {
        key.strip(): value.strip()
        for key, value in row.items()
        if key not in _ITEM_COLUMNS and key and value is not None
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
