"""The segment builder: conditions added as htmx fragments, the live count and preview, save
(with its CSRF token, and only with segments:write), share with a role, CSV export of the
members, and each mistake shown with what to change."""

from __future__ import annotations

import csv
import io
import re

import pytest

from .conftest import csrf_of, send_events

#: Four customers with these revenues (one order each).
REVENUES = {"lan": "30.15", "minh": "5.55", "an": "100.00", "hoa": "20.00"}

#: revenue >= 20: lan, an, hoa
RICH = {"lan", "an", "hoa"}


@pytest.fixture
def store(browser, runtime):
    admin = browser("admin")
    events = [
        {
            "userId": user,
            "messageId": f"seg-{user}",
            "type": "track",
            "event": "Order Completed",
            "timestamp": "2026-03-01T10:00:00Z",
            "properties": {"revenue": revenue},
        }
        for user, revenue in REVENUES.items()
    ]
    send_events(admin, runtime, events)
    return admin


def rich_form(**extra) -> dict:
    return {"kind": "field", "name": "revenue", "op": ">=", "value": "20", "days": ""} | extra


def save(client, name: str = "Big spenders", **form) -> object:
    page = client.get("/segments/new")
    data = rich_form(**form) | {"segment_name": name, "description": "", "spec_json": ""}
    return client.post(
        "/segments", data=data | {"_csrf": csrf_of(page.text)}, follow_redirects=False
    )


def test_the_live_count_and_preview_follow_the_conditions(store):
    answer = store.get("/segments/preview", params=rich_form(), headers={"HX-Request": "true"})

    assert answer.status_code == 200
    assert "<header" not in answer.text
    assert re.search(r'id="segment-count">\s*3 matching customers', answer.text)
    shown = set(re.findall(r'<a href="/customers/[^"]+">([a-z]+)</a>', answer.text))
    assert shown == RICH


def test_two_conditions_must_both_hold(store):
    params = [
        ("kind", "field"),
        ("name", "revenue"),
        ("op", ">="),
        ("value", "20"),
        ("days", ""),
        ("kind", "identifier"),
        ("name", "user_id"),
        ("op", "in"),
        ("value", "lan, minh"),
        ("days", ""),
    ]
    answer = store.get("/segments/preview", params=params)

    assert re.search(r'id="segment-count">\s*1 matching customers', answer.text)


def test_a_condition_the_filter_cannot_use_says_what_to_change(store):
    answer = store.get("/segments/preview", params=rich_form(name="shoe_size"))

    assert 'id="segment-preview-error"' in answer.text
    assert "is not a profile aggregate" in answer.text


def test_adding_a_condition_returns_a_row_with_fresh_labelled_ids(store):
    first = store.get("/segments/condition", headers={"HX-Request": "true"}).text
    second = store.get("/segments/condition", headers={"HX-Request": "true"}).text
    ids = re.findall(r'<li id="(condition-[0-9a-f]+)"', first + second)

    assert len(ids) == 2 and ids[0] != ids[1]
    for field in re.findall(r'<(?:input|select) id="([^"]+)"', first):
        assert f'<label for="{field}"' in first


def test_saving_a_segment_computes_its_members_and_shows_them(store):
    answer = save(store)

    assert answer.status_code == 303
    page = store.get(answer.headers["location"]).text
    assert "Segment Big spenders" in page
    assert 'id="segment-saved"' in page
    assert re.search(r'id="segment-count">\s*3 matching customers', page)
    assert 'value="revenue"' in page  # the builder shows the saved condition


def test_a_save_without_its_csrf_token_is_refused(store):
    data = rich_form() | {"segment_name": "No token", "description": "", "spec_json": ""}
    answer = store.post("/segments", data=data, follow_redirects=False)

    assert answer.status_code == 403
    assert "No token" not in store.get("/segments").text


def test_a_role_that_may_only_read_segments_cannot_save_one(browser, store):
    viewer = browser("viewer")
    page = viewer.get("/segments/new").text

    assert 'id="segment-save"' not in page
    assert save(viewer).status_code == 403


def test_a_taken_name_shows_the_builder_again_as_left(store):
    save(store)
    answer = save(store, value="50")

    assert answer.status_code == 409
    assert 'id="segment-error"' in answer.text
    assert 'value="50"' in answer.text


def test_the_members_download_as_csv(store):
    location = save(store).headers["location"]
    segment_id = location.split("/")[2].split("?")[0]
    answer = store.get(f"/segments/{segment_id}/export")

    assert answer.status_code == 200
    rows = list(csv.DictReader(io.StringIO(answer.content.decode("utf-8-sig"))))
    assert {row["user_id"] for row in rows} == RICH


def test_sharing_with_a_role_lets_its_users_see_the_segment(browser, store):
    location = save(store).headers["location"]
    segment_id = location.split("/")[2].split("?")[0]
    viewer = browser("viewer")
    assert "Big spenders" not in viewer.get("/segments").text

    page = store.get(f"/segments/{segment_id}")
    answer = store.post(
        f"/segments/{segment_id}/share",
        data={"share_role": "viewer", "share_user": "", "_csrf": csrf_of(page.text)},
        follow_redirects=False,
    )

    assert answer.status_code == 303
    assert "Big spenders" in viewer.get("/segments").text
    assert "role viewer" in store.get(f"/segments/{segment_id}").text


def test_a_filter_written_as_json_is_used_instead_of_the_rows(store):
    spec = '{"any": [{"identifier": "user_id", "op": "=", "value": "minh"}]}'
    answer = store.get("/segments/preview", params=rich_form(spec_json=spec))

    assert re.search(r'id="segment-count">\s*1 matching customers', answer.text)
    broken = store.get("/segments/preview", params=rich_form(spec_json="{not json"))
    assert "cannot be read" in broken.text
