"""Knowledge faults a tester found: a CSV quote left open swallowed the rows after it, a column
named twice kept one cell unseen, headers in another case or with `;` were refused, items
whose id holds '/' could be found but not read or deleted, and a search time without an
offset was read as UTC while validity dates are read in the default time zone."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest

from c360 import tokens
from c360.appliance.cli import EXIT_USAGE, main
from c360.errors import InputError
from c360.knowledge import search, store
from c360.knowledge.loaders import parse
from c360.knowledge.store import Item

WRITE = ["knowledge:read", "knowledge:write"]
CANONICAL = "id,type,title,price\nq1,product,Trà đào,45000\nq2,product,Bánh mì,35000\n"


@pytest.fixture
def api(runtime):
    """A client on the app with a knowledge:read and write bearer header as `client.writer`."""
    from litestar.testing import TestClient

    from c360.api.app import create_app

    with runtime.pool.connection() as conn:
        token, _ = tokens.create_token(conn, "user:root", "knowledge break test", WRITE)
    with TestClient(app=create_app(runtime.settings)) as client:
        client.writer = {"Authorization": f"Bearer {token}"}
        yield client


@pytest.fixture
def cli(runtime, monkeypatch):
    """`c360` on the test database; the root logger and umask put back afterwards."""
    import logging
    import os

    monkeypatch.setenv("C360_POSTGRES_DSN", runtime.settings.postgres_dsn)
    monkeypatch.setenv("C360_DATA_DIR", str(runtime.settings.data_dir))
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    umask = os.umask(0o022)
    os.umask(umask)
    yield main
    root.handlers[:] = handlers
    root.setLevel(level)
    os.umask(umask)


def _refusal(data: str, name: str = "a.csv") -> str:
    with pytest.raises(InputError) as refused:
        parse(data.encode(), name)
    return str(refused.value)


def _line_of(text: str, fragment: str) -> int:
    """The 1-based line of `fragment` in `text`, counted here rather than by the loader."""
    return text[: text.index(fragment)].count("\n") + 1


# 1. a quote left open ------------------------------------------------------------------------

OPEN_QUOTE = [
    # the tester's file: the quote never closes, q2 became part of q1's title
    'id,type,title\nq1,product,"unterminated\nq2,product,b\n',
    # a later quote closes it with text after it
    'id,type,title\nq1,product,"unterminated\nq2,product,"b" x\n',
    # the quote opens on a row after a legitimate multi-line body
    'id,type,title,body\nq0,product,a,"two\nlines"\nq1,product,x,"unterminated\n',
    # an escaped quote at a cell's end is not its closing quote
    'id,type,title,body\nq0,product,a,"say ""\nq1,product,x,y\n',
    # Windows line ends, and `;` as the separator
    'id;type;title\r\nq0;product;a\r\nq1;product;"unterminated\r\nq2;product;b\r\n',
]


@pytest.mark.parametrize("text", OPEN_QUOTE)
def test_a_quote_left_open_is_refused_naming_the_line_it_opens_on(text):
    message = _refusal(text)

    opened = _line_of(text, '"unterminated') if '"unterminated' in text else _line_of(text, '"say')
    assert message.startswith(f"a.csv, line {opened}: the quote that opens a cell here is not")
    # the csv module without strict mode reads fewer rows than the file has: rows were lost
    lenient = list(csv.reader(io.StringIO(text, newline=""), delimiter=text[2]))
    assert len(lenient) < text.replace("\r\n", "\n").count("\n")


def test_a_quote_closed_rows_later_in_a_one_line_cell_is_refused():
    # valid CSV, but the title swallowed two rows: a title has no line breaks
    text = 'id,type,title\nq0,product,a\nq1,product,"open\nq2,product,b\nq3,product,c"\n'

    message = _refusal(text)

    assert message.startswith(f"a.csv, line {_line_of(text, 'q1,')}: the title cell runs over")


def test_a_quoted_multi_line_body_and_escaped_quotes_still_load():
    text = 'id,type,title,body\nq1,product,"Trà ""đào""","one\ntwo, three"\n'

    (item,) = parse(text.encode(), "a.csv")

    assert (item.title, item.body) == ('Trà "đào"', "one\ntwo, three")


def test_the_files_route_refuses_a_quote_left_open_and_stores_nothing(api):
    text = OPEN_QUOTE[0]

    answer = api.post(
        "/v1/knowledge/files?name=a.csv",
        content=text.encode(),
        headers=api.writer | {"Content-Type": "text/csv"},
    )

    assert answer.status_code == 400, answer.text
    assert answer.json()["message"].startswith(f"a.csv, line {_line_of(text, 'q1,')}: the quote")
    assert api.get("/v1/knowledge/items/q1", headers=api.writer).status_code == 404


def test_the_cli_refuses_a_quote_left_open_in_one_line(cli, capsys, tmp_path):
    text = OPEN_QUOTE[0]
    path = tmp_path / "open.csv"
    path.write_text(text, encoding="utf-8")

    assert cli(["knowledge", "load", str(path)]) == EXIT_USAGE

    err = capsys.readouterr().err
    assert f"open.csv, line {_line_of(text, 'q1,')}: the quote that opens a cell here" in err
    assert err.count("\n") == 1 and "Traceback" not in err


# 2. a column named twice ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "column", "places"),
    [
        ("id,type,title,price,price", "price", (4, 5)),
        ("id,type,title,Price, price ", "price", (4, 5)),
        ("id,title,type,ID", "id", (1, 4)),
    ],
)
def test_a_column_named_twice_is_refused_naming_it(header, column, places):
    cells = header.count(",") + 1
    row = ",".join(["q7", "product", "x", "5", "6"][:cells])

    message = _refusal(f"{header}\n{row}\n")

    assert message.startswith(f"a.csv, line 1: column {column} is there twice")
    assert f"columns {places[0]} and {places[1]}" in message


def test_the_files_route_refuses_a_column_named_twice(api):
    answer = api.post(
        "/v1/knowledge/files?name=a.csv",
        content=b"id,type,title,price,price\nq7,product,x,5,6\n",
        headers=api.writer | {"Content-Type": "text/csv"},
    )

    assert answer.status_code == 400
    assert "column price is there twice" in answer.json()["message"]


def test_empty_column_names_are_not_a_repeated_column():
    # spreadsheets save trailing empty columns as ",,"
    (item,) = parse(b"id,type,title,,\nq1,product,x,,\n", "a.csv")

    assert item == Item("q1", "product", "x")


# 3. headers as spreadsheets write them -------------------------------------------------------


def _respelled(header: str, separator: str) -> str:
    """CANONICAL with another header and separator (no cell of it holds either)."""
    rows = CANONICAL.splitlines()[1:]
    return "\n".join([header, *(row.replace(",", separator) for row in rows)]) + "\n"


@pytest.mark.parametrize(
    ("header", "separator"),
    [
        ("ID,Type,Title,PRICE", ","),
        (" id , type , title , price ", ","),
        ("id;type;title;price", ";"),
        ("Id; Type; Title; Price", ";"),
        ("id\ttype\ttitle\tprice", "\t"),
    ],
)
def test_column_names_in_any_case_spacing_and_separator_read_as_the_canonical_file(
    header, separator
):
    expected = parse(CANONICAL.encode(), "a.csv")

    assert parse(_respelled(header, separator).encode(), "a.csv") == expected


def test_a_semicolon_header_keeps_commas_inside_cells():
    text = 'id;type;title;body\nq1;product;Trà đào;"peach, orange"\n'

    (item,) = parse(text.encode(), "a.csv")

    assert (item.title, item.body) == ("Trà đào", "peach, orange")


def test_a_header_read_as_one_column_says_how_to_separate_columns():
    message = _refusal("id type title\nq1 product x\n")

    assert message.startswith("a.csv, line 1: missing column id, title, type")
    assert "separate the columns with commas" in message


def test_a_missing_title_column_does_not_talk_about_types():
    message = _refusal("ID,Type,Name\nq1,product,x\n")

    assert message.startswith("a.csv, line 1: missing column title (the header has ID, Type,")
    assert "type column" not in message


def test_the_files_route_loads_a_semicolon_file_with_a_capitalised_header(api):
    answer = api.post(
        "/v1/knowledge/files?name=a.csv",
        content=_respelled("ID;Type;Title;Price", ";").encode(),
        headers=api.writer | {"Content-Type": "text/csv"},
    )

    assert answer.status_code == 200, answer.text
    assert answer.json()["items"] == CANONICAL.count("\n") - 1
    read = api.get("/v1/knowledge/items/q1", headers=api.writer).json()
    assert read["attributes"]["price"] == 45000


# 4. ids that hold '/' ------------------------------------------------------------------------


def _item(item_id: str) -> dict:
    return {"id": item_id, "type": "product", "title": f"Item {item_id}", "attributes": {}}


@pytest.mark.parametrize("item_id", ["cat/sub/item-1", "product:a/b"])
def test_an_id_with_slashes_is_read_and_deleted_by_path_as_is_or_encoded(api, item_id):
    assert api.post("/v1/knowledge/items", json=[_item(item_id)], headers=api.writer).is_success
    plain = f"/v1/knowledge/items/{item_id}"
    encoded = f"/v1/knowledge/items/{quote(item_id, safe='')}"

    assert api.get(plain, headers=api.writer).json() == _item(item_id) | {
        "body": "",
        "language": None,
    }
    assert api.get(encoded, headers=api.writer).json()["id"] == item_id
    assert api.delete(encoded, headers=api.writer).status_code == 204
    assert api.get(plain, headers=api.writer).status_code == 404
    hits = api.get("/v1/knowledge/search", params={"q": f"Item {item_id}"}, headers=api.writer)
    assert item_id not in {hit["id"] for hit in hits.json()["hits"]}


@pytest.mark.parametrize("item_id", ["/lead", "trail/", "a//b", ".", "a/../b"])
def test_an_id_a_path_cannot_carry_is_read_and_deleted_by_query(api, item_id):
    others = [_item("lead"), _item("trail"), _item("a/b"), _item("b")]
    items = [_item(item_id), *others]
    assert api.post("/v1/knowledge/items", json=items, headers=api.writer).is_success
    query = {"id": item_id}

    read = api.get("/v1/knowledge/items", params=query, headers=api.writer)

    assert read.status_code == 200 and read.json()["id"] == item_id
    assert api.delete("/v1/knowledge/items", params=query, headers=api.writer).status_code == 204
    assert api.get("/v1/knowledge/items", params=query, headers=api.writer).status_code == 404
    for other in others:  # no other item was taken for it
        still = api.get("/v1/knowledge/items", params={"id": other["id"]}, headers=api.writer)
        assert still.status_code == 200


def test_the_query_form_needs_an_id_and_the_read_scope(api):
    assert api.get("/v1/knowledge/items", headers=api.writer).status_code == 400
    wrong = api.get("/v1/knowledge/items", params={"item": "x"}, headers=api.writer)
    assert wrong.status_code == 400 and "unknown parameter item" in wrong.json()["message"]
    assert api.get("/v1/knowledge/items", params={"id": "x"}).status_code == 401
    missing = api.delete("/v1/knowledge/items/no/such", headers=api.writer)
    assert missing.status_code == 404 and "?id=" in missing.json()["message"]


# 5. a search time without an offset ----------------------------------------------------------

DAY = "2026-12-05"
PROMO = Item(
    "promotion:ONEDAY",
    "promotion",
    "One day coffee offer",
    "Half price coffee, one day only.",
    "en",
    {"code": "ONEDAY", "valid_from": DAY, "valid_to": DAY},
)
#: Wall-clock times asked about, without an offset.
LOCAL_TIMES = ["2026-12-04T23:30", "2026-12-05T00:30", "2026-12-05T23:30", "2026-12-06T00:30"]


def _valid_locally(wall_clock: str) -> bool:
    """Whether the offer runs at this wall-clock time: its date is DAY (stated by the test)."""
    return wall_clock.startswith(DAY)


@pytest.mark.parametrize("wall_clock", LOCAL_TIMES)
def test_a_search_time_without_offset_is_read_in_the_default_time_zone(runtime, wall_clock):
    store.upsert(runtime, [PROMO])
    naive = datetime.fromisoformat(wall_clock)
    zone = ZoneInfo(runtime.settings.default_timezone)
    assert zone.utcoffset(naive) != timedelta(0)  # else UTC and local would agree

    found = search.search(runtime, "ONEDAY coffee offer", types=["promotion"], at=naive)
    aware = search.search(
        runtime, "ONEDAY coffee offer", types=["promotion"], at=naive.replace(tzinfo=zone)
    )

    assert ([hit.item_id for hit in found] == [PROMO.item_id]) is _valid_locally(wall_clock)
    assert found == aware


@pytest.mark.parametrize("wall_clock", LOCAL_TIMES)
def test_the_search_route_reads_at_without_offset_in_the_default_time_zone(
    api, runtime, wall_clock
):
    store.upsert(runtime, [PROMO])
    params = {"q": "ONEDAY coffee offer", "type": "promotion", "at": wall_clock}

    answer = api.get("/v1/knowledge/search", params=params, headers=api.writer)

    assert answer.status_code == 200
    ids = [hit["id"] for hit in answer.json()["hits"]]
    assert (ids == [PROMO.item_id]) is _valid_locally(wall_clock)


def test_a_search_time_with_an_offset_keeps_its_offset(api, runtime):
    store.upsert(runtime, [PROMO])
    zone = ZoneInfo(runtime.settings.default_timezone)
    late = datetime.fromisoformat(f"{DAY}T23:30").replace(tzinfo=zone)
    in_utc = late.astimezone(ZoneInfo("UTC")).isoformat()

    params = {"q": "ONEDAY", "type": "promotion", "at": in_utc}
    answer = api.get("/v1/knowledge/search", params=params, headers=api.writer)

    assert [hit["id"] for hit in answer.json()["hits"]] == [PROMO.item_id]


def test_filters_refuse_a_time_without_offset():
    with pytest.raises(ValueError, match="no offset"):
        search.filters(None, None, datetime(2026, 12, 5, 23, 30), None)
