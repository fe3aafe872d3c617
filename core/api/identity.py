"""Identity over HTTP: a profile's merge history, undoing a merge, and the review queue.
Bearer-token auth, as the profile reads; answers through the same exact-Decimal encoder.

The history lives under `/v1/identity/profiles/{reference}/merges` rather than beside the
profile read: that read takes the rest of the path as the id (ids may hold slashes), so a
`/merges` suffix there would make an id ending in "/merges" mean two things.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import NotFoundException

from c360 import merges
from c360.api.profiles import _integer, _json
from c360.errors import InputError
from c360.profile_service import decide, profile_merges, reviews, undo_merge

#: Query parameters the review list understands; any other is a typo worth reporting.
REVIEW_PARAMETERS = ("status", "limit", "offset")

#: Deepest page of reviews, as for profiles: beyond it OFFSET would scan for minutes.
MAX_OFFSET = 10_000_000

#: Longest reviewer note kept; a longer one is refused rather than cut.
MAX_NOTE_CHARS = 2_000

#: Merge and review ids are PostgreSQL bigints: a larger number names nothing.
_MAX_ID = 2**63 - 1

#: Who an API call is recorded as: tokens name no person, and a token is a secret.
_API_ACTOR = "api"

_STATUS = {
    merges.ProfileNotFound: 404,
    merges.MergeNotFound: 404,
    merges.ReviewNotFound: 404,
    merges.AlreadyUndone: 409,
    merges.AlreadyDecided: 409,
    merges.MergeRefused: 409,
}


@get(
    "/v1/identity/profiles/{reference:str}/merges",
    sync_to_thread=True,
    opt={"permission": "profiles:read"},
)
def read_merges(request: Request, state: State, reference: str) -> Response[bytes]:
    """Every merge in the cluster of the profile known by `reference` (profile id, `type:value`
    or a bare identifier), undone ones included, oldest first, with their evidence."""
    history = profile_merges(state.runtime, reference)
    if history is None:
        raise NotFoundException(f"no profile is known by {reference!r}")
    return _json(history)


@post(
    "/v1/identity/merges/{merge_id:int}/undo",
    status_code=200,
    sync_to_thread=True,
    opt={"permission": "identity:write"},
)
def undo(request: Request, state: State, merge_id: int) -> Response[bytes]:
    """Undo one merge: both profiles get their events and identifiers back, their aggregates
    are recomputed, and the pair is kept apart from then on."""
    _check_id(merge_id, merges.MergeNotFound, "merge")
    return _json(undo_merge(state.runtime, merge_id, _API_ACTOR))


@get("/v1/identity/reviews", sync_to_thread=True, opt={"permission": "profiles:read"})
def read_reviews(request: Request, state: State) -> Response[bytes]:
    """Pairs queued for review with a status (pending by default), oldest first, paged."""
    params = request.query_params
    unknown = sorted(set(params.keys()) - set(REVIEW_PARAMETERS))
    if unknown:
        raise InputError(
            "unknown_parameter",
            f"unknown query parameter {', '.join(unknown)}; "
            f"the known ones are {', '.join(REVIEW_PARAMETERS)}",
        )
    status = params.get("status", "pending")
    if status not in merges.REVIEW_STATUSES:
        raise InputError("invalid_status", f"status must be {', '.join(merges.REVIEW_STATUSES)}")
    limit = _integer(params, "limit", 50, (1, 1000), "invalid_page")
    offset = _integer(params, "offset", 0, (0, MAX_OFFSET), "invalid_page")
    found = reviews(state.runtime, status, limit, offset)
    page = {"status": status, "limit": limit, "offset": offset}
    return _json({"reviews": found, "count": len(found), **page})


@post(
    "/v1/identity/reviews/{review_id:int}",
    status_code=200,
    sync_to_thread=True,
    opt={"permission": "identity:write"},
)
def decide_review(
    request: Request, state: State, review_id: int, data: Any = None
) -> Response[bytes]:
    """Decide a queued pair: `{"decision": "accept" | "reject", "note": "..."}`. Accept merges
    the two (rule "review"); reject keeps them apart for good."""
    _check_id(review_id, merges.ReviewNotFound, "review")
    accept, note = _decision(data)
    return _json(decide(state.runtime, review_id, accept, _API_ACTOR, note))


def identity_error(request: Request, exc: merges.IdentityError) -> Response:
    """An identity rule's refusal as `{code, message}`: 404 for an unknown id, 409 for a
    conflict with what was done before."""
    status = _STATUS.get(type(exc), 409)
    return Response({"code": exc.code, "message": exc.message}, status_code=status)


def _decision(data: Any) -> tuple[bool, str | None]:
    """(accept, note) from the body, each mistake named with its fix."""
    if not isinstance(data, dict):
        raise InputError(
            "invalid_decision",
            'send a JSON object such as {"decision": "accept", "note": "same person"}',
        )
    unknown = sorted(set(data) - {"decision", "note"})
    if unknown:
        raise InputError(
            "unknown_field", f"unknown field {', '.join(unknown)}; send decision and note"
        )
    decision = data.get("decision")
    if decision not in ("accept", "reject"):
        raise InputError("invalid_decision", 'decision must be "accept" or "reject"')
    note = data.get("note")
    if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE_CHARS):
        raise InputError(
            "invalid_note", f"note must be text of at most {MAX_NOTE_CHARS:,} characters"
        )
    return decision == "accept", note


def _check_id(value: int, error: type[merges.IdentityError], kind: str) -> None:
    if not 1 <= value <= _MAX_ID:
        raise error(f"no {kind} has the id {value}")
