"""Knowledge loaders: CSV and JSON files become checked items, and every mistake in a file is
reported with the file, the line and the field, saying how to fix it."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from c360.errors import InputError
from c360.knowledge.loaders import demo_catalogue, load_file, parse
from c360.knowledge.store import Item

DEMO = Path(__file__).resolve().parents[2] / "core" / "knowledge" / "data" / "demo_catalogue.json"

GOOD_CSV = """id,type,title,body,language,price,currency,stock,category,related,region,valid_to
product:CF-1,product,Cà phê sữa đá,"Drip coffee, condensed milk",vi,29000,vnd,12,coffee,\
bakery|snacks,,
promotion:P1,promotion,Tết offer,15% off,en,,,,gifts,,ha-noi|ho-chi-minh,2027-02-20
"""


def _refusal(data: str, name: str, item_type: str | None = None) -> str:
    with pytest.raises(InputError) as refused:
        parse(data.encode(), name, item_type)
    return str(refused.value)


def test_a_csv_file_becomes_items_with_attributes_in_canonical_form(tmp_path):
    path = tmp_path / "catalogue.csv"
    path.write_text(GOOD_CSV, encoding="utf-8")

    coffee, promotion = load_file(path)

    assert coffee == Item(
        "product:CF-1",
        "product",
        "Cà phê sữa đá",
        "Drip coffee, condensed milk",
        "vi",
        {
            "price": Decimal(29000),
            "currency": "VND",
            "stock": 12,
            "category": "coffee",
            "related": ["bakery", "snacks"],
        },
    )
    assert promotion.attributes == {
        "category": "gifts",
        "region": ["ha-noi", "ho-chi-minh"],
        "valid_to": "2027-02-20",
    }


def test_a_json_array_and_json_lines_give_the_same_items():
    array = '[\n {"id": "place:A", "type": "place", "title": "A", "attributes": {"price": 1.10}}\n]'
    lines = '{"id": "place:A", "type": "place", "title": "A", "attributes": {"price": 1.10}}\n'

    assert parse(array.encode(), "a.json") == parse(lines.encode(), "a.jsonl")
    assert parse(array.encode(), "a.json")[0].attributes["price"] == Decimal("1.10")


def test_the_demo_catalogue_loads_as_shipped():
    items = load_file(DEMO)
    assert demo_catalogue() == items

    kinds = [item.type for item in items]
    assert kinds.count("product") == 15 and kinds.count("place") == 3
    assert kinds.count("promotion") == 4 and kinds.count("persona") == 2
    assert all(isinstance(i.attributes.get("price"), Decimal) for i in items if i.type == "product")
    assert {i.attributes["code"] for i in items if i.type == "promotion"} == {
        "WELCOME10",
        "BANHMI2",
        "TET2027",
        "SUMMER26",
    }


def test_a_missing_column_names_the_file_line_and_column():
    message = _refusal("id,type\nproduct:1,product\n", "shop.csv")

    assert message.startswith("shop.csv, line 1: missing column title")


def test_a_missing_type_column_is_accepted_when_the_load_names_the_type():
    items = parse(b"id,title,price\nplace:1,Shop,0\n", "places.csv", "place")

    assert items[0].type == "place"
    assert "missing column type" in _refusal("id,title\nplace:1,Shop\n", "places.csv")


def test_a_bad_price_names_the_file_line_and_field():
    data = "id,type,title,price\nproduct:1,product,Tea,45000\nproduct:2,product,Cake,45.000,5\n"
    assert "more cells" in _refusal(data, "shop.csv")

    data = "id,type,title,price\nproduct:1,product,Tea,45000\nproduct:2,product,Cake,abc\n"
    message = _refusal(data, "shop.csv")
    assert message.startswith("shop.csv, line 3: field 'price' 'abc' is not a number")
    negative = _refusal("id,type,title,price\nproduct:1,product,Tea,-5\n", "shop.csv")
    assert negative.startswith("shop.csv, line 2: field 'price'")


def test_a_bad_date_names_the_file_line_and_field():
    data = (
        '[\n  {"id": "promotion:1", "type": "promotion", "title": "A"},\n  {"id": "promotion:2",\n'
    )
    data += '   "type": "promotion", "title": "B", "attributes": {"valid_to": "31/12/2026"}}\n]'

    message = _refusal(data, "promos.json")

    assert message.startswith("promos.json, line 3: field 'valid_to' '31/12/2026' is not a date")
    assert "2026-12-31" in message


def test_a_validity_that_ends_before_it_starts_is_refused():
    data = "id,type,title,valid_from,valid_to\npromotion:1,promotion,A,2027-02-01,2027-01-01\n"

    assert _refusal(data, "p.csv").startswith("p.csv, line 2: field 'valid_to' 2027-01-01 is")


def test_a_wrong_type_names_the_file_line_and_field():
    data = "id,type,title\nproduct:1,product,Tea\nproduct:2,coupon,Cake\n"

    message = _refusal(data, "shop.csv")

    assert message == (
        "shop.csv, line 3: field 'type' 'coupon' is not one of "
        "product, price, place, promotion, persona"
    )
    clash = _refusal("id,type,title\nproduct:1,product,Tea\n", "shop.csv", "place")
    assert clash.startswith("shop.csv, line 2: field 'type' is 'product' but the load is for")


def test_json_mistakes_name_the_line():
    assert _refusal('[\n {"id": "a", "type": "place", "title": "A"},\n {"id": }\n]', "x.json") == (
        "x.json, line 3: not valid JSON (Expecting value)"
    )
    unknown = '[{"id": "place:1", "type": "place", "title": "A", "price": 5}]'
    assert "field 'price' is not an item field; put it under `attributes`" in _refusal(
        unknown, "x.json"
    )
    assert _refusal('{"id": "place:1"}\n', "x.jsonl").startswith(
        "x.jsonl, line 1: field 'type' is missing"
    )


def test_other_files_are_refused_saying_what_is_accepted(tmp_path):
    assert _refusal("a;b", "catalogue.xlsx") == (
        "catalogue.xlsx: send a .csv, .json or .jsonl file"
    )
    with pytest.raises(InputError, match="no such file"):
        load_file(tmp_path / "missing.csv")
    with pytest.raises(InputError, match="is not UTF-8; save the file as UTF-8"):
        parse("id,title\nx,Cà phê\n".encode("cp1258"), "old.csv", "product")
