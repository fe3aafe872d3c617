"""Profile reads shared by the F5 JSON API, the UI and the trial summary (cache first), and the
identity actions they offer (merge history, unmerge, review decisions), which refresh the
cache and publish the profiles they change so no read is stale."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import redis
from psycopg.rows import dict_row

from c360 import merges
from c360.analytics import cache as analytics_cache
from c360.errors import AdapterError
from c360.events.identifiers import identifier_id, normalise_email, normalise_phone
from c360.events.text import clean_text
from c360.runtime import Runtime
from c360.stages.f3_resolve import load_documents, publish_profiles

log = logging.getLogger(__name__)

#: Bare ids are tried as these identifier types, in order.
LOOKUP_ORDER = ("user_id", "email", "phone", "anonymous_id", "crm_id")


@dataclass(frozen=True, slots=True)
class ProfileFilter:
    """Simple filters for listing profiles."""

    min_orders: int | None = None
    min_revenue: Decimal | None = None
    seen_after: Any = None
    order_by: str = "revenue"
    limit: int = 50
    offset: int = 0
    #: only profiles that events of this source reached
    source: str | None = None


def get_profile(runtime: Runtime, reference: str) -> dict[str, Any] | None:
    """The profile for a profile id, `type:value`, or a bare identifier; None if unknown."""
    for id_type, value in _candidates(reference, runtime.settings.default_region):
        doc = _from_cache(runtime, id_type, value) or _from_store(runtime, id_type, value)
        if doc:
            return doc
    return None


def list_profiles(runtime: Runtime, filters: ProfileFilter) -> list[dict[str, Any]]:
    """Live profiles matching the filters, most valuable (or most recent) first."""
    order = {
        "revenue": "revenue DESC",
        "last_seen": "last_seen DESC NULLS LAST",
        "orders": "order_count DESC",
    }[filters.order_by]
    clauses, params = ["merged_into IS NULL"], []
    if filters.min_orders is not None:
        clauses.append("order_count >= %s")
        params.append(filters.min_orders)
    if filters.min_revenue is not None:
        clauses.append("revenue >= %s")
        params.append(filters.min_revenue)
    if filters.seen_after is not None:
        clauses.append("last_seen >= %s")
        params.append(filters.seen_after)
    if filters.source is not None:
        clauses.append("profile_id IN (SELECT profile_id FROM events WHERE source = %s)")
        params.append(filters.source)
    sql = (
        f"SELECT profile_id FROM profiles WHERE {' AND '.join(clauses)}"
        f" ORDER BY {order}, profile_id LIMIT %s OFFSET %s"
    )
    with runtime.pool.connection() as conn:
        ids = [row[0] for row in conn.execute(sql, (*params, filters.limit, filters.offset))]
        documents = {doc["profile_id"]: doc for doc in load_documents(conn, ids)}
    return [documents[str(pid)] for pid in ids if str(pid) in documents]


def totals(runtime: Runtime, source: str | None = None) -> dict[str, Any]:
    """Counts and sums over live profiles and stored events: all of them, or with `source`
    the events of that source and the profiles they reached (with all their aggregates)."""
    reached = (
        " AND profile_id IN (SELECT profile_id FROM events WHERE source = %(source)s)"
        if source
        else ""
    )
    of_source = " WHERE source = %(source)s" if source else ""
    with runtime.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        profiles = cur.execute(
            "SELECT count(*) AS profiles, coalesce(sum(revenue), 0) AS revenue,"
            " coalesce(sum(order_count), 0) AS orders"
            f" FROM profiles WHERE merged_into IS NULL{reached}",
            {"source": source},
        ).fetchone()
        events = cur.execute(
            f"SELECT count(*) AS events, count(profile_id) AS resolved FROM events{of_source}",
            {"source": source},
        ).fetchone()
    return {**profiles, **events}


def profile_merges(runtime: Runtime, reference: str) -> dict[str, Any] | None:
    """The merge history of the profile known by `reference` (any form `get_profile` takes),
    undone merges included, oldest first; None if no profile is known by it."""
    doc = get_profile(runtime, reference)
    if doc is None:
        return None
    with runtime.pool.connection() as conn:
        history = merges.merge_history(conn, uuid.UUID(doc["profile_id"]))
    return {"profile_id": doc["profile_id"], "merges": history, "count": len(history)}


def undo_merge(runtime: Runtime, merge_id: int, undone_by: str | None) -> dict[str, Any]:
    """Undo a merge, then refresh both profiles in the cache; returns both documents."""
    with runtime.pool.connection() as conn:
        surviving, merged = merges.unmerge(conn, merge_id, undone_by)
    documents = _refreshed(runtime, [surviving, merged])
    return {
        "merge_id": merge_id,
        "surviving_id": str(surviving),
        "merged_id": str(merged),
        "profiles": documents,
    }


def reviews(runtime: Runtime, status: str, limit: int, offset: int) -> list[dict[str, Any]]:
    """Review-queue entries with this status, oldest first."""
    with runtime.pool.connection() as conn:
        return merges.review_queue(conn, status, limit, offset)


def decide(
    runtime: Runtime, review_id: int, accept: bool, decided_by: str | None, note: str | None
) -> dict[str, Any]:
    """Accept or reject a queued pair; after an accept, the merged profile leaves the cache and
    the survivor is refreshed. Returns the review and the current documents of the pair."""
    with runtime.pool.connection() as conn:
        review = merges.decide_review(conn, review_id, accept, decided_by, note)
    pair = [review["profile_a"], review["profile_b"]]
    return {"review": review, "profiles": _refreshed(runtime, pair)}


def _refreshed(runtime: Runtime, profile_ids: list[Any]) -> list[dict[str, Any]]:
    """Forget the cached documents of these ids, then cache and publish their live profiles."""
    try:
        runtime.cache.forget([str(profile_id) for profile_id in profile_ids])
        # a merge or unmerge moves customers between profiles: cached analytics are stale
        analytics_cache.note_new_data(runtime.valkey)
    except (AdapterError, redis.RedisError) as exc:  # the entries expire on their own
        log.warning("Profile cache unavailable; %r may read stale: %s", profile_ids, exc)
    return publish_profiles(runtime, profile_ids)


def _candidates(reference: str, region: str) -> list[tuple[str, str]]:
    # cleaned as F1 cleans stored text (NUL and lone surrogates to U+FFFD, NFC), so it matches
    reference = clean_text(reference.strip())
    profile_id = _profile_id(reference)
    if profile_id:
        return [("profile_id", profile_id)]
    kind, sep, value = reference.partition(":")
    if sep and kind == "profile_id":
        profile_id = _profile_id(value.strip())
        return [("profile_id", profile_id)] if profile_id else []
    if sep and kind in LOOKUP_ORDER:
        normalised = _normalise(kind, value, region)
        return [(kind, normalised)] if normalised else []
    found = []
    for kind in LOOKUP_ORDER:
        normalised = _normalise(kind, reference, region)
        if normalised:
            found.append((kind, normalised))
    return found


def _profile_id(text: str) -> str | None:
    """The canonical form of a profile id, or None when `text` is not a UUID."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def _normalise(kind: str, value: str, region: str) -> str | None:
    if kind == "email":
        return normalise_email(value)
    if kind == "phone":
        return normalise_phone(value, region) if any(c.isdigit() for c in value) else None
    return identifier_id(value)


def _from_cache(runtime: Runtime, id_type: str, value: str) -> dict[str, Any] | None:
    try:
        profile_id = value if id_type == "profile_id" else runtime.cache.lookup(id_type, value)
        return runtime.cache.get(profile_id) if profile_id else None
    except AdapterError as exc:  # the cache only speeds reads up: PostgreSQL still answers
        log.warning("Profile cache unavailable; reading PostgreSQL: %s", exc)
        return None


def _from_store(runtime: Runtime, id_type: str, value: str) -> dict[str, Any] | None:
    with runtime.pool.connection() as conn:
        if id_type == "profile_id":
            ids = [value]
        else:
            row = conn.execute(
                "SELECT profile_id FROM identifiers WHERE id_type = %s AND id_value = %s",
                (id_type, value),
            ).fetchone()
            ids = [row[0]] if row else []
        documents = load_documents(conn, ids)
    if documents:
        try:
            runtime.cache.put(documents)
        except AdapterError as exc:
            log.warning("Profile cache unavailable; profile %r not cached: %s", value, exc)
        return documents[0]
    return None
