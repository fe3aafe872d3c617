"""Pipeline health: the lag of each stage, the dead-letter list with each entry's raw payload
shown as escaped text, and a replay that needs pipeline:write and its CSRF token."""

from __future__ import annotations

import csv
import io
import re

import pytest

from c360.governance.pipeline import STAGES

from .conftest import WEB_AUTH, csrf_of

HOSTILE = '<img src=x onerror="alert(1)">'


@pytest.fixture
def dead_letter(browser):
    """An admin's client, after one event refused for lacking an identity (so dead-lettered)."""
    admin = browser("admin")
    answer = admin.post(
        "/v1/track",
        json={"event": "Signed Up", "messageId": "dlq-1", "properties": {"bio": HOSTILE}},
        headers=WEB_AUTH,
    )
    assert answer.status_code == 400
    return admin


def entry_id(page: str) -> str:
    found = re.search(r'href="/pipeline/dlq/([^"]+)"', page)
    assert found
    return found.group(1)


def test_the_page_lists_every_stage_and_the_dead_letter(dead_letter):
    page = dead_letter.get("/pipeline").text

    for stage, _topic, _group in STAGES:
        assert f'<th scope="row">{stage}</th>' in page
    assert "Dead-letter queue: 1 entries" in page
    assert "missing_identity" in page


def test_an_entry_shows_its_raw_payload_as_escaped_text(dead_letter):
    entry = entry_id(dead_letter.get("/pipeline").text)
    page = dead_letter.get(f"/pipeline/dlq/{entry}").text

    assert HOSTILE not in page
    assert "&lt;img src=x onerror=" in page
    assert "dlq-1" in page
    assert 'id="replay-submit"' in page


def test_the_dead_letters_download_as_csv(dead_letter):
    answer = dead_letter.get("/pipeline/export/dlq")
    rows = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"))))

    assert rows[0] == ["Entry", "Received", "Source", "Code", "Reason", "Replayed"]
    assert len(rows) == 2 and rows[1][2] == "web" and rows[1][3] == "missing_identity"


def test_a_role_without_pipeline_write_sees_no_replay_and_cannot_post_one(browser, dead_letter):
    analyst = browser("analyst")
    entry = entry_id(analyst.get("/pipeline").text)
    page = analyst.get(f"/pipeline/dlq/{entry}")

    assert 'id="replay-submit"' not in page.text
    answer = analyst.post(
        f"/pipeline/dlq/{entry}/replay",
        data={"_csrf": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert answer.status_code == 403


def test_a_replay_needs_its_csrf_token_and_then_says_how_it_went(dead_letter):
    entry = entry_id(dead_letter.get("/pipeline").text)
    page = dead_letter.get(f"/pipeline/dlq/{entry}")

    refused = dead_letter.post(f"/pipeline/dlq/{entry}/replay", follow_redirects=False)
    assert refused.status_code == 403

    answer = dead_letter.post(
        f"/pipeline/dlq/{entry}/replay",
        data={"_csrf": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    notice = dead_letter.get(answer.headers["location"]).text
    assert f"Dead letter {entry} was refused again" in notice


def test_an_unknown_entry_is_a_404_page(dead_letter):
    answer = dead_letter.get("/pipeline/dlq/no-such-entry")

    assert answer.status_code == 404
