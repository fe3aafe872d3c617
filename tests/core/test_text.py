"""Text hygiene: valid Unicode in NFC; undecodable input replaced; bare NaN refused."""

from __future__ import annotations

import unicodedata
from decimal import Decimal

import pytest

from c360.errors import InputError
from c360.events.text import clean, clean_text, lenient_json, needs_cleaning

REPLACEMENT = "\ufffd"


def test_a_lone_high_surrogate_becomes_the_replacement_character():
    assert clean_text("a\ud800b") == f"a{REPLACEMENT}b"


def test_a_lone_low_surrogate_becomes_the_replacement_character():
    assert clean_text("\udc00") == REPLACEMENT


def test_surrogates_in_the_wrong_order_are_both_replaced():
    assert clean_text("\udc00\ud800") == REPLACEMENT * 2


def test_a_split_surrogate_pair_is_joined_into_its_character():
    assert clean_text("\ud83d\ude00") == "\U0001f600"


def test_the_cleaned_text_encodes_as_utf8():
    clean_text("x\ud800y\udfffz").encode("utf-8")


def test_vietnamese_with_combining_marks_is_composed():
    decomposed = "Vie\u0302\u0323t Nam"
    composed = "Vi\u1ec7t Nam"

    assert clean_text(decomposed) == composed
    assert len(clean_text(decomposed)) == len(composed) == 8


def test_text_already_in_nfc_is_unchanged():
    text = "Thành phố Hồ Chí Minh, 😀"

    assert unicodedata.is_normalized("NFC", text)
    assert clean_text(text) == text


def test_a_leading_byte_order_mark_character_is_kept():
    assert clean_text("\ufeffabc") == "\ufeffabc"


def test_clean_reaches_keys_and_nested_lists():
    value = {"Ha\u0300": ["a\ud800", {"b\udc00": 1}], "n": Decimal("1.5")}

    cleaned = {"H\u00e0": [f"a{REPLACEMENT}", {f"b{REPLACEMENT}": 1}], "n": Decimal("1.5")}

    assert clean(value) == cleaned


def test_lenient_json_replaces_invalid_utf8():
    assert lenient_json(b'{"a": "x\xffy"}') == {"a": f"x{REPLACEMENT}y"}


def test_lenient_json_replaces_escaped_lone_surrogates():
    assert lenient_json(b'{"a": "\\ud800"}') == {"a": REPLACEMENT}


def test_lenient_json_reads_fractions_as_decimal():
    assert lenient_json(b'{"a": 0.1}') == {"a": Decimal("0.1")}


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_lenient_json_refuses_bare_nan_and_infinity_with_a_400(constant):
    with pytest.raises(InputError) as caught:
        lenient_json(b'{"a": ' + constant + b"}")

    assert caught.value.code == "invalid_json"
    assert caught.value.status_code == 400


def test_lenient_json_refuses_what_is_not_json():
    with pytest.raises(InputError):
        lenient_json(b"{'a': 1}")


def test_ascii_without_escapes_needs_no_cleaning():
    assert not needs_cleaning(b'{"a": "plain"}')


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": "\\u00e0"}',  # an escape may spell NUL or a lone surrogate
        '{"a": "Nguye\u0302\u0303n"}'.encode(),  # decomposed Vietnamese, not NFC
        b'{"a": "\xff"}',  # not UTF-8
    ],
)
def test_escapes_decomposed_text_and_bad_bytes_need_cleaning(raw):
    assert needs_cleaning(raw)


def test_composed_vietnamese_text_needs_no_cleaning():
    assert not needs_cleaning('{"name": "Nguyễn Thị Lan", "city": "Hà Nội"}'.encode())


def test_a_nul_character_is_replaced_even_in_ascii_text():
    assert clean_text("a\x00b") == "a\ufffdb"
