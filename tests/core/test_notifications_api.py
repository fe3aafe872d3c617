"""The notifications API over HTTP behind the accounts guard: rules and templates, a test send
through the local SMTP server, the sends list with its counts, the public one-click
unsubscribe (a page that asks, a POST that does), the open pixel (kept only with consent to
tracking), and the counters on /metrics."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from notify_support import (
    Clock,
    email_settings,
    feed,
    identify,
    order,
    rule,
    run_scheduler,
    sends,
    template,
)

from c360 import tokens
from c360.notifications import preferences, tracking
from c360.runtime import Runtime

NOW = datetime(2026, 5, 4, 3, 0, tzinfo=UTC)
WRITER = ["notifications:read", "notifications:write"]


@pytest.fixture
def rt(runtime, smtp):
    engaged = Runtime(email_settings(runtime.settings, smtp.port))
    yield engaged
    engaged.close()


@pytest.fixture
def api(rt):
    from litestar.testing import TestClient

    from c360.api.app import create_app

    def bearer(scopes: list[str]) -> dict[str, str]:
        with rt.pool.connection() as conn:
            token, _ = tokens.create_token(conn, "user:root", f"t-{len(scopes)}", scopes)
        return {"Authorization": f"Bearer {token}"}

    with TestClient(app=create_app(rt.settings)) as client:
        client.bearer = bearer
        yield client


def test_rules_and_templates_round_trip_with_permissions(api):
    writer, reader = api.bearer(WRITER), api.bearer(["notifications:read"])
    saved = api.post(
        "/v1/notifications/templates",
        json={"name": "welcome", "channel": "email", "subject": "Hi", "body": "Hello"},
        headers=writer,
    )
    assert saved.status_code == 201, saved.text
    spec = {
        "name": "first",
        "trigger": "first_purchase",
        "template": "welcome",
        "channel": "email",
        "purpose": "marketing",
        "conditions": {"within_hours": 48},
    }
    made = api.post("/v1/notifications/rules", json=spec, headers=writer)
    assert made.status_code == 201, made.text
    rule_id = made.json()["rule_id"]

    assert api.post("/v1/notifications/rules", json=spec, headers=writer).status_code == 409
    refused = api.post("/v1/notifications/rules", json=spec, headers=reader)
    assert refused.status_code == 403
    assert "notifications:write" in refused.json()["message"]

    changed = api.put(f"/v1/notifications/rules/{rule_id}", json={"enabled": False}, headers=writer)
    assert changed.status_code == 200, changed.text
    assert changed.json()["enabled"] is False
    assert changed.json()["conditions"] == {"within_hours": 48}
    listed = api.get("/v1/notifications/rules", headers=reader).json()["rules"]
    assert [r["name"] for r in listed] == ["first"]

    in_use = api.delete("/v1/notifications/templates/welcome", headers=writer)
    assert in_use.status_code == 409 and "first" in in_use.json()["message"]
    assert api.delete(f"/v1/notifications/rules/{rule_id}", headers=writer).status_code == 204
    assert api.get(f"/v1/notifications/rules/{rule_id}", headers=reader).status_code == 404
    assert api.delete("/v1/notifications/templates/welcome", headers=writer).status_code == 204


def test_a_template_refused_over_http_names_its_line(api):
    answer = api.post(
        "/v1/notifications/templates",
        json={"name": "bad", "channel": "email", "body": "ok\n{{ ''.__class__ }}"},
        headers=api.bearer(WRITER),
    )
    assert answer.status_code == 400
    assert answer.json()["message"].startswith("body, line 2: ")


def test_a_test_send_reaches_the_smtp_server_and_is_listed(api, smtp):
    writer = api.bearer(WRITER)
    api.post(
        "/v1/notifications/templates",
        json={"name": "welcome", "channel": "email", "subject": "Hi", "body": "Hello {{ rule }}"},
        headers=writer,
    )
    answer = api.post(
        "/v1/notifications/test",
        json={"template": "welcome", "channel": "email", "to": "ops@example.com"},
        headers=writer,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["text"] == "Hello test"

    from c360.channels import delivery

    delivery.run_due(api.app.state.runtime)
    assert [m["To"] for m in smtp.messages] == ["ops@example.com"]
    listed = api.get("/v1/notifications/sends", headers=writer).json()
    assert listed["by_state"] == {"enqueued": 1}
    assert listed["deliveries"] == {"sent": 1}
    assert listed["sends"][0]["delivery_status"] == "sent"
    # the send's own state stays what the scheduler decided; `outcome` is where it ended
    assert (listed["sends"][0]["state"], listed["sends"][0]["outcome"]) == ("enqueued", "sent")
    assert set(listed["columns"]) == {"state", "delivery_status", "outcome"}


def test_send_addresses_are_masked_without_pii_read_and_shown_reads_are_audited(api, rt):
    from c360 import audit

    writer = api.bearer(WRITER)
    api.post(
        "/v1/notifications/templates",
        json={"name": "welcome", "channel": "email", "subject": "Hi", "body": "Hello"},
        headers=writer,
    )
    api.post(
        "/v1/notifications/test",
        json={"template": "welcome", "channel": "email", "to": "lan.nguyen@example.vn"},
        headers=writer,
    )

    masked = api.get("/v1/notifications/sends", headers=api.bearer(["notifications:read"]))
    with rt.pool.connection() as conn:
        reads_before = len(audit.entries(conn, action_prefix="pii.read"))
    shown = api.get(
        "/v1/notifications/sends", headers=api.bearer(["notifications:read", "pii:read"])
    )

    assert masked.json()["sends"][0]["address"] == "l***@example.vn"
    assert shown.json()["sends"][0]["address"] == "lan.nguyen@example.vn"
    with rt.pool.connection() as conn:
        reads = audit.entries(conn, action_prefix="pii.read")
    assert reads_before == 0 and len(reads) == 1
    assert reads[0].target == "api:/v1/notifications/sends"


@pytest.mark.parametrize(
    ("query", "fragment"),
    [("?state=lost", "state must be one of"), ("?colour=red", "unknown query parameter colour")],
)
def test_the_sends_list_refuses_unknown_filters(api, query, fragment):
    answer = api.get(f"/v1/notifications/sends{query}", headers=api.bearer(WRITER))
    assert answer.status_code == 400 and fragment in answer.json()["message"]


def _one_send(rt, clock, **consent) -> dict:
    template(rt)
    rule(rt)
    choices = {"marketing": True, **consent}
    feed(rt, clock, identify("u-1", NOW, consent=choices, email="lan@example.com"))
    feed(rt, clock, order("u-1", "9", NOW))
    run_scheduler(rt, clock)
    return sends(rt)[0]


def test_the_unsubscribe_page_asks_first_and_the_post_unsubscribes(api, rt):
    send = _one_send(rt, Clock(NOW))
    path = (
        f"/u/{preferences.make_link_token(rt.settings, preferences.UNSUBSCRIBE, send['send_id'])}"
    )

    page = api.get(path)
    assert page.status_code == 200 and 'name="List-Unsubscribe" value="One-Click"' in page.text
    assert page.headers["cache-control"] == "no-store"
    with rt.pool.connection() as conn:
        assert preferences.allows(
            conn, channel="email", purpose="marketing", profile_id=None, address="lan@example.com"
        )

    bare = api.post(
        path, content=b"", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert bare.status_code == 400 and "List-Unsubscribe=One-Click" in bare.text

    done = api.post(path, data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200 and "no more marketing messages by email" in done.text
    with rt.pool.connection() as conn:
        assert not preferences.allows(
            conn, channel="email", purpose="marketing", profile_id=None, address="LAN@example.com"
        )


@pytest.mark.parametrize("kind", ["forged", "open-token", "cut"])
def test_an_unsubscribe_link_c360_did_not_sign_is_a_404_and_changes_nothing(api, rt, kind):
    send = _one_send(rt, Clock(NOW))
    good = preferences.make_link_token(rt.settings, preferences.UNSUBSCRIBE, send["send_id"])
    token = {
        "forged": f"{send['send_id']}.AAAAAAAAAAAAAAAAAAAAAA",
        "open-token": preferences.make_link_token(rt.settings, preferences.OPEN, send["send_id"]),
        "cut": good[:-3],
    }[kind]
    answer = api.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 404 and "not valid" in answer.text
    with rt.pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM notify.preferences").fetchone()[0] == 0


def test_the_open_pixel_is_recorded_only_when_the_customer_allows_tracking(api, rt, smtp):
    clock = Clock(NOW)
    send = _one_send(rt, clock, analytics=True)
    [mail] = smtp.messages
    html = mail.get_body(("html",)).get_content()
    pixel = preferences.open_pixel_url(rt.settings, send["send_id"])
    assert pixel in html

    answer = api.get(pixel.removeprefix("https://c360.example.com"))
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/gif"
    assert answer.headers["cache-control"].startswith("no-store")
    assert answer.content[:6] == b"GIF89a" and answer.content[6:10] == b"\x01\x00\x01\x00"
    assert sends(rt)[0]["opened_at"] is not None


def test_no_pixel_and_no_record_without_consent_to_tracking(api, rt, smtp):
    send = _one_send(rt, Clock(NOW))
    [mail] = smtp.messages
    assert "/o/" not in mail.get_body(("html",)).get_content()
    token = preferences.make_link_token(rt.settings, preferences.OPEN, send["send_id"])
    assert tracking.record_open(rt, token) is False
    assert api.get(f"/o/{token}.gif").status_code == 200
    assert sends(rt)[0]["opened_at"] is None
    assert api.get("/o/123.AAAA.gif").status_code == 404


def test_metrics_count_sends_by_state_and_suppressions_by_reason(api, rt):
    clock = Clock(NOW)
    template(rt)
    rule(rt)
    feed(rt, clock, identify("yes", NOW, consent={"marketing": True}, email="y@example.com"))
    feed(rt, clock, identify("no", NOW, consent={"marketing": False}, email="n@example.com"))
    feed(rt, clock, order("yes", "9", NOW), order("no", "9", NOW))
    run_scheduler(rt, clock)

    text = api.get("/metrics").text
    assert 'c360_notify_sends{channel="email",state="enqueued"} 1.0' in text
    assert 'c360_notify_sends{channel="email",state="suppressed"} 1.0' in text
    assert 'c360_notify_suppressed_total{reason="no_consent"} 1.0' in text


def test_a_rule_on_a_channel_not_configured_names_the_configured_ones(api):
    writer = api.bearer(WRITER)
    api.post(
        "/v1/notifications/templates",
        json={"name": "welcome", "channel": "email", "body": "Hi"},
        headers=writer,
    )
    spec = {
        "name": "r",
        "trigger": "first_purchase",
        "template": "welcome",
        "channel": "pigeon",
        "purpose": "marketing",
    }
    answer = api.post("/v1/notifications/rules", json=spec, headers=writer)
    assert answer.status_code == 400
    assert answer.json()["code"] == "unknown_channel"
    assert "no channel named 'pigeon' is configured; configured: " in answer.json()["message"]
    assert "email" in answer.json()["message"].split("configured: ")[1]
    made = api.post("/v1/notifications/rules", json={**spec, "channel": "email"}, headers=writer)
    assert made.status_code == 201, made.text
    moved = api.put(
        f"/v1/notifications/rules/{made.json()['rule_id']}",
        json={"channel": "pigeon"},
        headers=writer,
    )
    assert moved.status_code == 400 and moved.json()["code"] == "unknown_channel"


@pytest.mark.parametrize(
    ("channel", "to", "code", "fragment"),
    [
        ("email", "not-an-address", "invalid_address", "is not an e-mail address"),
        ("email", "two@at@example.com", "invalid_address", "is not an e-mail address"),
        ("webchat", "cdnow-00001", "invalid_address", "no web-chat conversation 'cdnow-00001'"),
        ("pigeon", "coop-7", "unknown_channel", "no channel named 'pigeon' is configured"),
    ],
)
def test_a_test_send_to_an_address_its_channel_cannot_reach_is_refused_at_once(
    api, channel, to, code, fragment
):
    writer = api.bearer(WRITER)
    api.post(
        "/v1/notifications/templates",
        json={"name": "welcome", "channel": channel, "body": "Hi"},
        headers=writer,
    )
    answer = api.post(
        "/v1/notifications/test",
        json={"template": "welcome", "channel": channel, "to": to},
        headers=writer,
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == code and fragment in answer.json()["message"]
    assert api.get("/v1/notifications/sends", headers=writer).json()["total"] == 0


def test_an_address_that_unsubscribed_through_a_test_message_gets_no_more_tests(api, rt, smtp):
    writer = api.bearer(WRITER)
    api.post(
        "/v1/notifications/templates",
        json={"name": "welcome", "channel": "email", "body": "Hello"},
        headers=writer,
    )
    test = {"template": "welcome", "channel": "email", "to": "ops@example.com"}
    first = api.post("/v1/notifications/test", json=test, headers=writer)
    assert first.status_code == 200, first.text
    token = preferences.make_link_token(
        rt.settings, preferences.UNSUBSCRIBE, first.json()["send_id"]
    )
    done = api.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert "no more test messages by email" in done.text

    again = api.post(
        "/v1/notifications/test", json={**test, "to": "OPS@example.com "}, headers=writer
    )
    assert again.status_code == 409, again.text
    assert again.json()["code"] == "unsubscribed"
    assert "'OPS@example.com' unsubscribed from messages by email" in again.json()["message"]

    from c360.channels import delivery

    delivery.run_due(rt)
    assert [m["To"] for m in smtp.messages] == ["ops@example.com"]
    assert api.get("/v1/notifications/sends", headers=writer).json()["total"] == 1
    other = api.post(
        "/v1/notifications/test", json={**test, "to": "dev@example.com"}, headers=writer
    )
    assert other.status_code == 200, other.text
