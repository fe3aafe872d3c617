"""F4 notifications API: rules and templates, test sends, the sends with their outcomes; and
the public links a notification carries (one-click unsubscribe, open pixel).

    GET    /v1/notifications/rules                                   notifications:read
    POST   /v1/notifications/rules        {name, trigger, template, channel, purpose,
                                           conditions?, delay_s?, enabled?}  notifications:write
    GET    /v1/notifications/rules/{id}                              notifications:read
    PUT    /v1/notifications/rules/{id}   {fields to change}         notifications:write
    DELETE /v1/notifications/rules/{id}                              notifications:write
    GET    /v1/notifications/templates                               notifications:read
    POST   /v1/notifications/templates    {name, channel, language?, subject?, body, html?}
                                                                     notifications:write
    GET    /v1/notifications/templates/{name}   every version        notifications:read
    DELETE /v1/notifications/templates/{name}                        notifications:write
    POST   /v1/notifications/test         {template, channel, to, language?, profile_id?}
                                                                     notifications:write
    GET    /v1/notifications/sends?state=&channel=&rule_id=&profile_id=&limit=&offset=
                                                                     notifications:read
    GET    /u/{token}        a page asking to confirm the unsubscribe          public
    POST   /u/{token}        List-Unsubscribe=One-Click: unsubscribed (RFC 8058) public
    GET    /o/{token}.gif    1x1 GIF; records the open if the customer allows  public

The public links are signed (c360.notifications.preferences); the signature is their only
credential, so they need no session and no CSRF cookie (a mail client posts the one-click
unsubscribe with no cookies at all).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from html import escape
from typing import Any

import anyio
import msgspec
import psycopg
from litestar import Request, Response, delete, get, post, put
from litestar.datastructures import State
from litestar.handlers import HTTPRouteHandler
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from c360 import audit
from c360.access import Principal
from c360.api import bodies
from c360.api.bodies import documented
from c360.errors import InputError, Unauthorized
from c360.events.model import encode
from c360.governance import policies
from c360.notifications import service, tracking
from c360.notifications.preferences import InvalidLink
from c360.runtime import Runtime

READ, WRITE = {"permission": "notifications:read"}, {"permission": "notifications:write"}
#: Public links whose signature is the credential: no double-submit cookie is asked for.
SIGNED_LINK = {"public": True, "csrf": "signed_link"}

#: RFC 8058: the body a one-click unsubscribe POST carries.
ONE_CLICK = ("List-Unsubscribe", "One-Click")


@get("/v1/notifications/rules", opt=READ)
async def list_rules(state: State) -> Response[bytes]:
    """Every live rule."""
    return _json({"rules": await _with_conn(state, service.list_rules)})


@post("/v1/notifications/rules", opt=WRITE, operation_class=documented(bodies.RULE))
async def create_rule(request: Request, state: State, body: bytes) -> Response[bytes]:
    """Save a rule; 409 when its name is taken."""
    actor = _principal(request).actor
    channels = await _in_thread(service.configured_channels, state.runtime)
    made = await _with_conn(state, service.create_rule, actor, _body(body), channels)
    return _json(made, status_code=201)


@get("/v1/notifications/rules/{rule_id:int}", opt=READ)
async def read_rule(state: State, rule_id: int) -> Response[bytes]:
    """One rule."""
    return _json(await _with_conn(state, service.get_rule, rule_id))


@put(
    "/v1/notifications/rules/{rule_id:int}",
    opt=WRITE,
    operation_class=documented(bodies.RULE_CHANGE),
)
async def update_rule(request: Request, state: State, rule_id: int, body: bytes) -> Response[bytes]:
    """Change a rule's fields (enable, disable, re-target)."""
    actor = _principal(request).actor
    channels = await _in_thread(service.configured_channels, state.runtime)
    changed = await _with_conn(state, service.update_rule, actor, rule_id, _body(body), channels)
    return _json(changed)


@delete("/v1/notifications/rules/{rule_id:int}", opt=WRITE)
async def delete_rule(request: Request, state: State, rule_id: int) -> None:
    """Retire a rule; its due sends are suppressed, its history kept."""
    await _with_conn(state, service.delete_rule, _principal(request).actor, rule_id)


@get("/v1/notifications/templates", opt=READ)
async def list_templates(state: State) -> Response[bytes]:
    """Every version of every template."""
    found = await _with_conn(state, service.templates.list_templates)
    return _json({"templates": found})


@post("/v1/notifications/templates", opt=WRITE, operation_class=documented(bodies.TEMPLATE))
async def save_template(request: Request, state: State, body: bytes) -> Response[bytes]:
    """Save a template as its next version; 400 naming the line of a template refused."""
    actor = _principal(request).actor
    return _json(await _with_conn(state, service.save_template, actor, _body(body)), 201)


@get("/v1/notifications/templates/{name:str}", opt=READ)
async def read_template(state: State, name: str) -> Response[bytes]:
    """Every version of one template, newest first per channel and language."""
    return _json({"versions": await _with_conn(state, service.template_versions, name)})


@delete("/v1/notifications/templates/{name:str}", opt=WRITE)
async def delete_template(request: Request, state: State, name: str) -> None:
    """Delete a template that no rule uses and nothing was sent with."""
    await _with_conn(state, service.delete_template, _principal(request).actor, name)


@post(
    "/v1/notifications/test",
    status_code=200,
    opt=WRITE,
    operation_class=documented(bodies.TEST_SEND),
)
async def test_send(request: Request, state: State, body: bytes) -> Response[bytes]:
    """Send a template to one address now (consent and quiet hours do not apply)."""
    actor = _principal(request).actor
    sent = await _in_thread(service.test_send, state.runtime, actor, _body(body))
    return _json(sent)


@get("/v1/notifications/sends", opt=READ)
async def list_sends(request: Request, state: State) -> Response[bytes]:
    """A page of sends with their outcomes, and counts by state, channel and reason. Addresses
    are masked for a reader the access policies do not let see them; a read that shows them is
    audited."""
    principal = _principal(request)
    filters, limit, offset = service.check_send_filters(request.query_params)

    def read(conn: Any) -> Any:
        found = service.list_sends(conn, filters, limit, offset)
        masker = policies.ContactMasker(conn, principal)
        for send in found["sends"]:
            send["address"] = masker.address(send["channel"], send["address"])
        if masker.shown:
            profiles = {str(send["profile_id"]) for send in found["sends"] if send["profile_id"]}
            audit.record_pii_read(
                conn,
                actor=principal.actor,
                profile_ids=sorted(profiles),
                fields=[f"send.address:{name}" for name in masker.shown],
                via="api:/v1/notifications/sends",
            )
        return found

    return _json(await _with_conn(state, read))


@get("/u/{token:str}", opt=SIGNED_LINK, include_in_schema=False)
async def unsubscribe_page(state: State, token: str) -> Response[str]:
    """Ask the customer to confirm: opening a link (or a mail scanner fetching it) must not
    unsubscribe anyone, so the page posts the one-click form."""
    try:
        what = await _in_thread(tracking.preview_link, state.runtime, token)
    except InvalidLink as exc:
        return _page("Link not valid", exc.message, status_code=404)
    question = f"Stop receiving {escape(what['purpose'])} messages by {escape(what['channel'])}?"
    form = (
        f'<form method="post" action="/u/{escape(token)}">'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Unsubscribe</button></form>'
    )
    return _page("Unsubscribe", question, extra=form)


@post("/u/{token:str}", status_code=200, opt=SIGNED_LINK, include_in_schema=False)
async def unsubscribe_one_click(request: Request, state: State, token: str) -> Response[str]:
    """RFC 8058 one-click: a POST with List-Unsubscribe=One-Click unsubscribes at once."""
    form = await request.form()
    if form.get(ONE_CLICK[0]) != ONE_CLICK[1]:
        return _page(
            "Nothing changed",
            "an unsubscribe request must carry List-Unsubscribe=One-Click "
            "(application/x-www-form-urlencoded): use the button on this link's page",
            status_code=400,
        )
    try:
        done = await _in_thread(tracking.unsubscribe_by_link, state.runtime, token, "one_click")
    except InvalidLink as exc:
        return _page("Link not valid", exc.message, status_code=404)
    text = f"You will get no more {escape(done['purpose'])} messages by {escape(done['channel'])}."
    return _page("Unsubscribed", text)


@get("/o/{name:str}", opt={"public": True}, include_in_schema=False)
async def open_pixel(state: State, name: str) -> Response[bytes]:
    """The open-tracking pixel: always the GIF for a link c360 signed, never cached."""
    token = name.removesuffix(".gif")
    if token == name:
        raise InputError("not_found", "open pixels end in .gif")
    await _in_thread(tracking.record_open, state.runtime, token)
    return Response(
        tracking.PIXEL,
        media_type="image/gif",
        headers={"Cache-Control": "no-store, max-age=0", "Pragma": "no-cache"},
    )


def route_handlers() -> list[HTTPRouteHandler]:
    """Every notifications route, for the app to register."""
    return [
        list_rules,
        create_rule,
        read_rule,
        update_rule,
        delete_rule,
        list_templates,
        save_template,
        read_template,
        delete_template,
        test_send,
        list_sends,
        unsubscribe_page,
        unsubscribe_one_click,
        open_pixel,
    ]


def notification_metrics(runtime: Runtime) -> Iterator[Any]:
    """Sends by state and channel, suppressions by reason, opens and opt-outs, counted in
    PostgreSQL (where sends live) so every process reports the same figures."""
    try:
        with runtime.pool.connection() as conn:
            sends = conn.execute(
                "SELECT state, channel, split_part(coalesce(reason, ''), ':', 1), count(*),"
                " count(opened_at) FROM notify.sends GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
            ).fetchall()
            opted_out = conn.execute(
                "SELECT channel, count(*) FROM notify.preferences WHERE NOT subscribed"
                " GROUP BY 1 ORDER BY 1"
            ).fetchall()
    except psycopg.errors.UndefinedTable:
        return  # not migrated yet: nothing to report
    by_state = GaugeMetricFamily(
        "c360_notify_sends", "Notification sends by state and channel.", labels=["state", "channel"]
    )
    reasons = CounterMetricFamily(
        "c360_notify_suppressed", "Notifications suppressed, by reason.", labels=["reason"]
    )
    opened = CounterMetricFamily(
        "c360_notify_opened",
        "Notifications opened (where tracking is allowed).",
        labels=["channel"],
    )
    states: dict[tuple[str, str], int] = {}
    suppressed: dict[str, int] = {}
    opens: dict[str, int] = {}
    for state, channel, reason, count, opened_count in sends:
        states[state, channel] = states.get((state, channel), 0) + count
        if state == "suppressed":
            suppressed[reason] = suppressed.get(reason, 0) + count
        opens[channel] = opens.get(channel, 0) + opened_count
    for (state, channel), count in states.items():
        by_state.add_metric([state, channel], count)
    for reason, count in suppressed.items():
        reasons.add_metric([reason], count)
    for channel, count in opens.items():
        opened.add_metric([channel], count)
    unsubscribed = GaugeMetricFamily(
        "c360_notify_opted_out", "Standing opt-outs by channel.", labels=["channel"]
    )
    for channel, count in opted_out:
        unsubscribed.add_metric([channel], count)
    yield from (by_state, reasons, opened, unsubscribed)


def _page(title: str, text: str, *, extra: str = "", status_code: int = 200) -> Response[str]:
    """A small self-contained page (no scripts, no outside assets) for the customer."""
    body = (
        '<!doctype html><html><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width">'
        f"<title>{escape(title)}</title></head><body>"
        f"<h1>{escape(title)}</h1><p>{text}</p>{extra}</body></html>"
    )
    return Response(
        body,
        media_type="text/html",
        status_code=status_code,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


def _principal(request: Request) -> Principal:
    user = request.scope.get("user")
    if not isinstance(user, Principal):
        raise Unauthorized("not_signed_in", "sign in, or send `Authorization: Bearer <token>`")
    return user


def _body(body: bytes) -> Any:
    """The JSON sent; numbers as int or float (rule conditions and delays are not money)."""
    try:
        return msgspec.json.decode(body or b"null")
    except msgspec.DecodeError:
        raise InputError("invalid_json", "the body is not valid JSON") from None


async def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Blocking work off the event loop (async handlers: see c360.api.segments._in_thread)."""
    return await anyio.to_thread.run_sync(partial(fn, *args))


async def _with_conn(state: State, fn: Callable[..., Any], *args: Any) -> Any:
    def run() -> Any:
        with state.runtime.pool.connection() as conn:
            return fn(conn, *args)

    return await anyio.to_thread.run_sync(run)


def _json(value: Any, status_code: int = 200) -> Response[bytes]:
    return Response(content=encode(value), media_type="application/json", status_code=status_code)
