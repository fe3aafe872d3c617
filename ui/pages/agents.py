"""The operator's pages: the queue of conversations escalated to a person (/agents), one
conversation with its turns and what c360 knows of the customer (/agents/conversations/{id}),
and what an operator does there: take it, answer the customer through the channel they last
wrote from, hand it back to the agent.

Opening a conversation reads personal data and is audited, as the JSON API does. Touches no
database itself: c360.agents (dialogue, escalation, service) and c360.audit do.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from litestar import Request, get, post
from litestar.datastructures import State
from litestar.enums import MediaType, RequestEncodingType
from litestar.params import Body, FromPath
from litestar.response import Redirect, Template

from c360 import audit
from c360.access import Principal
from c360.agents import dialogue, escalation, service
from c360.errors import InputError
from c360.governance import policies
from c360.ui.pages.common import PAGE_HEADERS, Link, TableView, page, require

#: A posted form.
Form = Annotated[dict[str, Any], Body(media_type=RequestEncodingType.URL_ENCODED)]

#: Escalations the queue shows (oldest first), and recent conversations beside them.
QUEUE_SIZE = 100
RECENT_SIZE = 20

#: Turns a conversation page shows (the latest).
TURNS_SHOWN = 100

#: How often the queue asks for itself again (htmx polling): new escalations show up without
#: a reload, at the cost of one small query per open queue page.
QUEUE_REFRESH = "every 5s"

#: Escalations still with the operators.
OPEN_STATUSES = ("queued", "taken", "answered")

#: What the reasons mean, as an operator reads them.
REASONS = {
    escalation.HUMAN_REQUEST: "asked for a person",
    escalation.LOW_CONFIDENCE: "the agent did not understand twice",
    escalation.NEGATIVE_SENTIMENT: "customer upset",
    escalation.HIGH_VALUE_COMPLAINT: "complaint from a high-value customer",
    "operator": "an operator wrote first",
}

#: Who said a turn, as the page shows it.
ROLES = {"customer": "Customer", "agent": "Agent", "operator": "Operator", "system": "Note"}


@get("/agents", opt={"permission": "agents:read"}, include_in_schema=False, sync_to_thread=True)
def queue_page(request: Request[Any, Any, Any], state: State) -> Template:
    """The escalation queue and the latest conversations."""
    with state.runtime.pool.connection() as conn:
        waiting = escalation.queue(conn, OPEN_STATUSES, QUEUE_SIZE)
        recent = dialogue.listing(conn, None, RECENT_SIZE, 0)
    context = {
        "queue": queue_view(waiting),
        "recent": recent_view(recent),
        "refresh": QUEUE_REFRESH,
        "handed_back": request.query_params.get("handed_back") == "1",
    }
    return page(request, "agents/queue.html", "Conversations", "agents", context)


@get(
    "/agents/queue",
    opt={"permission": "agents:read"},
    include_in_schema=False,
    sync_to_thread=True,
)
def queue_fragment(request: Request[Any, Any, Any], state: State) -> Template:
    """The queue's table alone, for the page's polling."""
    with state.runtime.pool.connection() as conn:
        waiting = escalation.queue(conn, OPEN_STATUSES, QUEUE_SIZE)
    return Template(
        template_name="agents/_queue.html",
        context={"queue": queue_view(waiting), "refresh": QUEUE_REFRESH},
        headers=PAGE_HEADERS,
        media_type=MediaType.HTML,
    )


@get(
    "/agents/conversations/{conversation_id:str}",
    opt={"permission": "agents:read"},
    include_in_schema=False,
    sync_to_thread=True,
)
def conversation_page(
    request: Request[Any, Any, Any], state: State, conversation_id: FromPath[str]
) -> Template:
    """One conversation: its turns, the customer's context, and the operator's actions."""
    notice = _notice(request.query_params)
    return _conversation(request, state, conversation_id, notice=notice)


@post(
    "/agents/escalations/{escalation_id:int}/take",
    opt={"permission": "agents:operate"},
    include_in_schema=False,
    sync_to_thread=True,
)
def take(
    request: Request[Any, Any, Any], state: State, escalation_id: FromPath[int], data: Form
) -> Any:
    """Take an escalation (the operator's own from now on), then show its conversation."""
    who = _who(request)
    conversation_id = str(data.get("conversation_id") or "")
    try:
        with state.runtime.pool.connection() as conn:
            taken = escalation.take(conn, escalation_id, who.actor)
    except InputError as exc:
        return _conversation(request, state, conversation_id, error=exc)
    target = f"/agents/conversations/{taken['conversation_id']}?done=taken"
    return Redirect(path=target, status_code=303)


@post(
    "/agents/conversations/{conversation_id:str}/reply",
    opt={"permission": "agents:operate"},
    include_in_schema=False,
    sync_to_thread=True,
)
def reply(
    request: Request[Any, Any, Any], state: State, conversation_id: FromPath[str], data: Form
) -> Any:
    """Send the operator's answer through the customer's channel."""
    who = _who(request)
    text = str(data.get("text") or "")
    try:
        service.operator_reply(state.runtime, conversation_id, text, who.actor)
    except InputError as exc:
        return _conversation(request, state, conversation_id, error=exc, draft=text)
    return Redirect(path=f"/agents/conversations/{conversation_id}?done=sent", status_code=303)


@post(
    "/agents/conversations/{conversation_id:str}/handback",
    opt={"permission": "agents:operate"},
    include_in_schema=False,
    sync_to_thread=True,
)
def hand_back(
    request: Request[Any, Any, Any], state: State, conversation_id: FromPath[str], data: Form
) -> Any:
    """Close the escalation: the agent answers the customer again."""
    who = _who(request)
    try:
        service.hand_back(state.runtime, conversation_id, who.actor)
    except InputError as exc:
        return _conversation(request, state, conversation_id, error=exc)
    return Redirect(path="/agents?handed_back=1", status_code=303)


HANDLERS = [queue_page, queue_fragment, conversation_page, take, reply, hand_back]


# -- views ----------------------------------------------------------------------------------


def queue_view(rows: list[dict[str, Any]]) -> TableView:
    """The queue as a table: oldest first, each row leading to its conversation."""
    return TableView(
        id="escalation-queue",
        caption="Conversations waiting for a person",
        columns=(
            "Conversation",
            "Why",
            "Status",
            "Operator",
            "Channel",
            "Language",
            "Value tier",
            "Since",
        ),
        rows=[
            [
                Link(
                    f"Open conversation {row['escalation_id']}",
                    f"/agents/conversations/{row['conversation_id']}",
                ),
                REASONS.get(row["reason"], row["reason"]),
                row["status"],
                row["operator"] or "—",
                row["channel"],
                row["language"],
                row["ltv_tier"] or "—",
                row["created_at"],
            ]
            for row in rows
        ],
    )


def recent_view(rows: list[dict[str, Any]]) -> TableView:
    """The latest conversations, escalated or not (no texts: those are on each page)."""
    return TableView(
        id="recent-conversations",
        caption="Latest conversations",
        columns=("Conversation", "Status", "Channel", "Language", "Turns", "Last active"),
        rows=[
            [
                Link(row["conversation_id"][:8], f"/agents/conversations/{row['conversation_id']}"),
                row["status"],
                row["channel"],
                row["language"],
                row["turn_count"],
                row["updated_at"],
            ]
            for row in rows
        ],
        numeric=frozenset({4}),
    )


def turn_view(row: dict[str, Any]) -> dict[str, Any]:
    """A turn as the page lists it."""
    at: datetime = row["created_at"]
    return {
        "role": row["role"],
        "who": ROLES.get(row["role"], row["role"]),
        "text": row["text"],
        "at": at,
        "by": row.get("written_by") if row["role"] == "operator" else None,
        "intent": row.get("intent") if row["role"] == "customer" else None,
    }


# -- helpers ----------------------------------------------------------------------------------


def _conversation(
    request: Request[Any, Any, Any],
    state: State,
    conversation_id: str,
    *,
    notice: str | None = None,
    error: InputError | None = None,
    draft: str = "",
) -> Template:
    """The conversation page (with an operator's mistake or conflict shown, if any)."""
    who = _who(request)
    with state.runtime.pool.connection() as conn:
        conversation = dialogue.get(conn, conversation_id)
        if conversation is None:
            raise service.UnknownConversation(conversation_id)
        turns = dialogue.turns(conn, conversation.conversation_id, TURNS_SHOWN)
        open_escalation = _open_escalation(conn, conversation.conversation_id)
        # what the customer wrote is shown (an operator answers it); who they are is masked
        # for a reader the access policies do not let see it, as in the API
        masker = policies.ContactMasker(conn, who)
        customer = masker.context(conversation.context or {})
        audit.record_pii_read(
            conn,
            actor=who.actor,
            profile_ids=[conversation.profile_id] if conversation.profile_id else [],
            fields=["conversation.turns", *(f"conversation:{name}" for name in masker.shown)],
            via=f"ui:/agents/conversations/{conversation.conversation_id}",
        )
    context = {
        "conversation": conversation,
        "customer": customer,
        "turns": [turn_view(row) for row in turns],
        "escalation": open_escalation,
        "reason": REASONS.get((open_escalation or {}).get("reason", ""), ""),
        "can_operate": who.can("agents:operate"),
        "can_see_profile": who.can("profiles:read"),
        "mine": bool(open_escalation and open_escalation["operator"] == who.actor),
        "notice": notice,
        "error": error,
        "draft": draft,
    }
    status = error.status_code if error else 200
    title = "Conversation"
    return page(request, "agents/conversation.html", title, "agents", context, status_code=status)


def _open_escalation(conn: Any, conversation_id: str) -> dict[str, Any] | None:
    """The conversation's escalation still with the operators, if any."""
    waiting = escalation.queue(conn, OPEN_STATUSES, QUEUE_SIZE)
    return next((row for row in waiting if str(row["conversation_id"]) == conversation_id), None)


def _notice(params: Any) -> str | None:
    return {
        "taken": "You have taken this conversation: the customer waits for your answer.",
        "sent": "Your answer was sent to the customer.",
    }.get(params.get("done", ""))


def _who(request: Request[Any, Any, Any]) -> Principal:
    return require(request, "agents:read")
