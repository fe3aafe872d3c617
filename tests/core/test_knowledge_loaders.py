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
    assert clash.startswith("shop.csv, line 2: field 'type' is product but the load is for place")


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


# Bounds on every numeric attribute: a price of 1e309 went in as a 310-digit number once.
HEADER = "id,type,title,price,discount_percent,stock,language,hours,amount\n"


@pytest.mark.parametrize(
    ("cells", "field", "says"),
    [
        ("1e309,,,,,", "price", "'1e309' must be below 1,000,000,000,000"),
        ("1000000000000,,,,,", "price", "must be below 1,000,000,000,000"),
        ("NaN,,,,,", "price", "'NaN' is not a finite number"),
        ("Infinity,,,,,", "price", "'Infinity' is not a finite number"),
        ("-5,,,,,", "price", "'-5' must be a number of 0 or more"),
        ("1.123456,,,,,", "price", "'1.123456' has more than 4 decimals"),
        (",150,,,,", "discount_percent", "'150' must be between 0 and 100"),
        (",-20,,,,", "discount_percent", "'-20' must be between 0 and 100"),
        (",,-3,,,", "stock", "'-3' must be a whole number from 0"),
        (",,2.5,,,", "stock", "'2.5' must be a whole number"),
        (",,,klingon,,", "language", "'klingon' is not a language code"),
        (",,,xx,,", "language", "'xx' is not a language code"),
        (",,,,25:99-xx,", "hours", "'25:99-xx' is not opening hours"),
        (",,,,every day,", "hours", "'every day' is not opening hours"),
        (",,,,,-1", "amount", "'-1' must be a number of 0 or more"),
    ],
)
def test_numbers_languages_and_hours_out_of_range_name_the_file_line_and_field(cells, field, says):
    data = HEADER + "product:1,product,Tea,1,,,,,\n" + f"product:2,product,Cake,{cells}\n"

    message = _refusal(data, "shop.csv")

    assert message.startswith(f"shop.csv, line 3: field '{field}' ")
    assert says in message


def test_numbers_in_range_are_kept_exact_and_in_plain_form():
    data = HEADER + "product:1,product,Tea,1E+3,12.5,0,EN-us,07:00-11:00 and 13:00-24:00,0.25\n"

    (item,) = parse(data.encode(), "shop.csv")

    assert item.attributes["price"] == Decimal(1000)
    assert str(item.attributes["price"]) == "1000"  # not 1E+3, as it is then shown
    assert item.attributes["discount_percent"] == Decimal("12.5")
    assert item.attributes["stock"] == 0
    assert item.attributes["amount"] == Decimal("0.25")
    assert item.language == "en-US"


def test_a_json_number_of_any_other_attribute_is_bounded_too():
    too_big = '[{"id": "place:1", "type": "place", "title": "A", "attributes": {"seats": 1e400}}]'
    fine = '[{"id": "place:1", "type": "place", "title": "A", "attributes": {"seats": 40}}]'

    assert _refusal(too_big, "p.json").startswith("p.json, line 1: field 'seats' ")
    assert parse(fine.encode(), "p.json")[0].attributes == {"seats": 40}


def test_a_duplicate_id_refuses_the_load_naming_both_lines():
    data = "id,title,price\nT-011,Tea,1\nT-012,Cake,2\nT-011,Tea again,3\n"
    lines = (
        '{"id": "a", "type": "place", "title": "A"}\n\n{"id": "a", "type": "place", "title": "B"}\n'
    )

    assert _refusal(data, "shop.csv", "product") == (
        "shop.csv, line 4: id T-011 is also at line 2; give each item its own id, or remove one "
        "copy"
    )
    assert _refusal(lines, "p.jsonl").startswith("p.jsonl, line 3: id a is also at line 1;")


def test_a_nul_character_is_refused_naming_the_line_and_field():
    assert _refusal("id,title,price\nNULCSV,a\x00b,1\n", "nul.csv", "product") == (
        "nul.csv, line 2: field 'title' contains a NUL character (byte 0); remove it"
    )
    json_nul = (
        '[\n{"id": "x", "type": "place", "title": "A",\n "attributes": {"note": "a\\u0000"}}]'
    )
    assert _refusal(json_nul, "n.json").startswith("n.json, line 2: field 'note' contains a NUL")


def test_a_file_without_items_is_refused_saying_so():
    assert _refusal("id,title\n", "empty.csv", "product") == (
        "empty.csv: the file has no items; add at least one"
    )
    assert _refusal("[]", "empty.json").startswith("empty.json: the file has no items")
    assert _refusal("\n\n", "empty.jsonl").startswith("empty.jsonl: the file has no items")


def test_messages_show_values_as_written_not_as_python_reprs():
    bad = '[{"id": "p:1", "type": "product", "title": "A", "attributes": {"price": {"a": 1}}}]'
    flag = '[{"id": "p:1", "type": "product", "title": "A", "attributes": {"code": true}}]'

    assert "{'a'" not in _refusal(bad, "x.json") and '{"a":1}' in _refusal(bad, "x.json")
    assert _refusal(flag, "x.json").endswith("field 'code' must be text; got true")
    assert "True" not in _refusal(flag, "x.json")


def test_the_missing_type_message_names_the_option_of_the_caller(tmp_path):
    path = tmp_path / "places.csv"
    path.write_text("id,title\nplace:1,Shop\n", encoding="utf-8")

    with pytest.raises(InputError, match="row with --type"):
        load_file(path)
    api = _refusal("id,title\nplace:1,Shop\n", "places.csv")
    assert "--type" not in api
