"""The agents admin API: personas (versioned behaviour rules), conversations with their turns,
the escalation queue, and what operators do (take, answer through the customer's channel,
hand back). Opening a conversation reads personal data (what the customer wrote, where from)
and is audited as such (c360.audit.record_pii_read); lists carry no texts or addresses.

    GET  /v1/agents/personas                                   agents:read
    GET  /v1/agents/personas/{agent}         active + versions  agents:read
    PUT  /v1/agents/personas/{agent}         {name?, tone?, ...} agents:write
    GET  /v1/agents/conversations?status=&limit=&offset=        agents:read
    GET  /v1/agents/conversations/{id}?limit=   with turns      agents:read
    GET  /v1/agents/escalations?status=&limit=&offset=          agents:read
    POST /v1/agents/escalations/{id}/take                       agents:operate
    POST /v1/agents/conversations/{id}/reply  {text}            agents:operate
    POST /v1/agents/conversations/{id}/handback                 agents:operate
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import anyio
from litestar import Request, Response, get, post, put
from litestar.datastructures import State
from litestar.handlers import HTTPRouteHandler

from c360 import audit
from c360.access import Principal
from c360.agents import dialogue, escalation, personas, service
from c360.api import bodies
from c360.api.bodies import documented
from c360.errors import InputError, Unauthorized
from c360.events.model import decode_any, encode
from c360.governance import policies

#: Largest page of a list.
MAX_LIMIT = 500
_CONVERSATION_STATUSES = ("open", "escalated", "closed")


@get("/v1/agents/personas", opt={"permission": "agents:read"})
async def list_personas(state: State) -> Response[bytes]:
    """Every configured agent's active persona (the built-in one when none is configured)."""
    found = await _with_conn(state, personas.list_active)
    if not any(p.agent == personas.DEFAULT_AGENT for p in found):
        found.insert(0, personas.BUILT_IN)
    return _json({"personas": [p.as_dict() for p in found]})


@get("/v1/agents/personas/{agent:str}", opt={"permission": "agents:read"})
async def read_persona(state: State, agent: str) -> Response[bytes]:
    """An agent's active persona and every stored version, newest first."""

    def read(conn: Any) -> dict[str, Any]:
        if not personas.exists(conn, agent):
            raise UnknownPersona(agent)
        return {
            "active": personas.active(conn, agent).as_dict(),
            "versions": [p.as_dict() for p in personas.versions(conn, agent)],
        }

    return _json(await _with_conn(state, read))


@put(
    "/v1/agents/personas/{agent:str}",
    opt={"permission": "agents:write"},
    operation_class=documented(bodies.PERSONA),
)
async def update_persona(
    request: Request, state: State, agent: str, body: bytes
) -> Response[bytes]:
    """Store a new active version; fields left out keep their current values."""
    principal = _principal(request)
    data = _body(body)
    saved = await _with_conn(state, personas.save, agent, data, principal.actor)
    return _json(saved.as_dict())


@get("/v1/agents/conversations", opt={"permission": "agents:read"})
async def list_conversations(request: Request, state: State) -> Response[bytes]:
    """Conversations, most recently active first (no texts or addresses)."""
    params = _query(request.query_params, ("status", "limit", "offset"))
    status = params.get("status")
    if status is not None and status not in _CONVERSATION_STATUSES:
        raise InputError("invalid_status", f"status must be {', '.join(_CONVERSATION_STATUSES)}")
    limit, offset = _page(params)
    found = await _with_conn(state, dialogue.listing, status, limit, offset)
    return _json({"conversations": found, "limit": limit, "offset": offset})


@get("/v1/agents/conversations/{conversation_id:str}", opt={"permission": "agents:read"})
async def read_conversation(
    request: Request, state: State, conversation_id: str
) -> Response[bytes]:
    """One conversation with its turns and context; the read is audited."""
    principal = _principal(request)
    limit, _ = _page(_query(request.query_params, ("limit",)))

    def read(conn: Any) -> dict[str, Any]:
        conversation = dialogue.get(conn, conversation_id)
        if conversation is None:
            raise service.UnknownConversation(conversation_id)
        turns = dialogue.turns(conn, conversation.conversation_id, limit)
        # what the customer wrote is shown (an operator answers it); who they are is masked
        # for a reader the access policies do not let see it
        masker = policies.ContactMasker(conn, principal)
        shown = conversation.as_dict()
        shown["address"] = masker.address(conversation.channel, conversation.address)
        shown["context"] = masker.context(conversation.context or {})
        audit.record_pii_read(
            conn,
            actor=principal.actor,
            profile_ids=[conversation.profile_id] if conversation.profile_id else [],
            fields=["conversation.turns", *(f"conversation:{name}" for name in masker.shown)],
            via=f"api:/v1/agents/conversations/{conversation.conversation_id}",
        )
        return {**shown, "turns": turns}

    return _json(await _with_conn(state, read))


@get("/v1/agents/escalations", opt={"permission": "agents:read"})
async def list_escalations(request: Request, state: State) -> Response[bytes]:
    """The operators' queue: queued, taken and answered escalations, oldest first (or those
    of one `status`)."""
    params = _query(request.query_params, ("status", "limit", "offset"))
    status = params.get("status")
    if status is not None and status not in escalation.STATUSES:
        raise InputError("invalid_status", f"status must be {', '.join(escalation.STATUSES)}")
    statuses = (status,) if status else ("queued", "taken", "answered")
    limit, offset = _page(params)
    found = await _with_conn(state, escalation.queue, statuses, limit, offset)
    return _json({"escalations": found, "limit": limit, "offset": offset})


@post(
    "/v1/agents/escalations/{escalation_id:int}/take",
    status_code=200,
    opt={"permission": "agents:operate"},
)
async def take_escalation(request: Request, state: State, escalation_id: int) -> Response[bytes]:
    """Take a queued escalation; 409 when another operator holds it."""
    principal = _principal(request)
    return _json(await _with_conn(state, escalation.take, escalation_id, principal.actor))


@post(
    "/v1/agents/conversations/{conversation_id:str}/reply",
    status_code=201,
    opt={"permission": "agents:operate"},
    operation_class=documented(bodies.OPERATOR_REPLY),
)
async def reply(
    request: Request, state: State, conversation_id: str, body: bytes
) -> Response[bytes]:
    """Answer the customer as an operator, through the channel they last wrote from."""
    principal = _principal(request)
    data = _body(body)
    unknown = sorted(str(key) for key in data if key != "text")
    if unknown or "text" not in data:
        raise InputError("invalid_body", 'send {"text": "your answer"}')
    sent = await anyio.to_thread.run_sync(
        partial(
            service.operator_reply, state.runtime, conversation_id, data["text"], principal.actor
        )
    )
    return _json(
        {
            "conversation_id": conversation_id,
            "channel": sent.channel,
            "idempotency_key": sent.idempotency_key,
        },
        status_code=201,
    )


@post(
    "/v1/agents/conversations/{conversation_id:str}/handback",
    status_code=200,
    opt={"permission": "agents:operate"},
)
async def hand_back(request: Request, state: State, conversation_id: str) -> Response[bytes]:
    """Close the escalation; the agent answers the customer again."""
    principal = _principal(request)
    done = await anyio.to_thread.run_sync(
        partial(service.hand_back, state.runtime, conversation_id, principal.actor)
    )
    return _json(done)


def route_handlers() -> list[HTTPRouteHandler]:
    """Every agents route, for the app to register."""
    return [
        list_personas,
        read_persona,
        update_persona,
        list_conversations,
        read_conversation,
        list_escalations,
        take_escalation,
        reply,
        hand_back,
    ]


class UnknownPersona(InputError):
    """No persona was ever stored for that agent (and it is not the default one)."""

    status_code = 404

    def __init__(self, agent: str) -> None:
        super().__init__(
            "unknown_persona",
            f"no persona for agent {agent!r}; create one with PUT /v1/agents/personas/{agent}",
        )


def _principal(request: Request) -> Principal:
    user = request.scope.get("user")
    if not isinstance(user, Principal):
        raise Unauthorized("not_signed_in", "sign in, or send `Authorization: Bearer <token>`")
    return user


async def _with_conn(state: State, fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(conn, *args)` in a worker thread with a pooled connection (async handlers, not
    sync_to_thread: Litestar 2.25 answers 500 for two sync handlers on one path)."""

    def run() -> Any:
        with state.runtime.pool.connection() as conn:
            return fn(conn, *args)

    return await anyio.to_thread.run_sync(run)


def _body(body: bytes) -> dict[str, Any]:
    try:
        data = decode_any(body or b"null")
    except ValueError:
        raise InputError("invalid_json", "the body is not valid JSON") from None
    if not isinstance(data, Mapping):
        raise InputError("invalid_body", "send a JSON object")
    return dict(data)


def _query(params: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
    unknown = sorted(set(params.keys()) - set(allowed))
    if unknown:
        raise InputError(
            "unknown_parameter",
            f"unknown query parameter {', '.join(unknown)}; use {', '.join(allowed)}",
        )
    return {key: params.get(key) for key in allowed if key in params}


def _page(params: Mapping[str, Any]) -> tuple[int, int]:
    values = []
    for key, default, high in (("limit", 50, MAX_LIMIT), ("offset", 0, 10_000_000)):
        raw = params.get(key, default)
        text = str(raw).strip()
        if not text.isdigit() or not 0 <= int(text) <= high or (key == "limit" and text == "0"):
            raise InputError(
                "invalid_page", f"{key} must be a whole number from {int(key == 'limit')} to {high}"
            )
        values.append(int(text))
    return values[0], values[1]


def _json(value: Any, status_code: int = 200) -> Response[bytes]:
    return Response(content=encode(value), media_type="application/json", status_code=status_code)
