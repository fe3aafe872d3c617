"""Deterministic identity resolution: which profile an event belongs to, and which profiles merge.

Rules, in order:
- identifiers are tried by priority (userId, CRM id, email, phone, anonymousId);
- a profile holds at most one value of each unique type (userId, CRM id): two profiles with
  different userIds are never merged, whatever else they share;
- a weak identifier (anonymousId, a device id) merges two profiles only when at most one of
  them is a known customer (holds a strong identifier), and never brings an event that carries
  a new strong identifier into a known customer's profile (a shared device);
- two profiles kept apart (an unmerge, or a reviewer who rejected the pair, wrote a
  separation between members of their clusters) are never merged again;
- an identifier that belongs to a profile the event cannot join stays where it is, and the
  conflict is recorded.

Pure logic over what F3 loaded; F3 writes the outcome in one transaction.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable
from typing import Any

from c360.events.identifiers import PRIORITY, STRONG, TRUST, UNIQUE_PER_PROFILE
from c360.profiles import EventFact, ProfileState, apply_event, merge_into, new_profile

IdKey = tuple[str, str]

_UNIQUE_CLASH = "different unique identifiers (userId / CRM id)"
_KEPT_APART = "kept apart: an unmerge or a reviewer separated these profiles"


@dataclasses.dataclass(slots=True)
class Merge:
    """Evidence that `merged` was folded into `surviving`."""

    surviving: uuid.UUID
    merged: uuid.UUID
    rule: str
    evidence: dict[str, Any]
    fact: EventFact


@dataclasses.dataclass(slots=True)
class Conflict:
    """An identifier the event carried that stays with another profile."""

    profile: uuid.UUID
    other: uuid.UUID
    identifier: IdKey
    reason: str
    fact: EventFact


@dataclasses.dataclass(slots=True)
class Link:
    """An identifier attached to a profile, with its raw value and when it was seen."""

    identifier: IdKey
    raw: str
    profile: uuid.UUID
    fact: EventFact


class Resolver:
    """Resolves a batch of events against the owners, profiles and separations F3 loaded
    (separations: pairs of live profiles that must never merge)."""

    def __init__(
        self,
        owners: dict[IdKey, uuid.UUID],
        profiles: dict[uuid.UUID, ProfileState],
        separations: Iterable[tuple[uuid.UUID, uuid.UUID]] = (),
    ):
        self.owners = owners
        self.profiles = profiles
        self.apart: dict[uuid.UUID, set[uuid.UUID]] = {}
        for a, b in separations:
            self.apart.setdefault(a, set()).add(b)
            self.apart.setdefault(b, set()).add(a)
        self.redirects: dict[uuid.UUID, uuid.UUID] = {}
        self.links: list[Link] = []
        self.merges: list[Merge] = []
        self.conflicts: list[Conflict] = []
        self.assignments: dict[tuple[str, str], uuid.UUID] = {}

    def resolve(self, fact: EventFact) -> ProfileState:
        """Attach one event to its profile (creating or merging as the rules say)."""
        identifiers = sorted(fact.identifiers, key=lambda item: _rank(item[0]))
        event_unique = {
            kind: value for kind, value, _raw in identifiers if kind in UNIQUE_PER_PROFILE
        }
        event_known = any(TRUST.get(kind) == STRONG for kind, _value, _raw in identifiers)
        target: ProfileState | None = None
        skipped: list[tuple[IdKey, uuid.UUID, str]] = []

        for kind, value, _raw in identifiers:
            owner_id = self.owners.get((kind, value))
            if owner_id is None:
                continue
            owner = self.profiles[self.current(owner_id)]
            if target is None:
                reason = _join_refusal(kind, owner, event_unique, event_known)
                if reason:
                    skipped.append(((kind, value), owner.profile_id, reason))
                else:
                    target = owner
                continue
            if owner.profile_id != target.profile_id:
                self._try_merge(target, owner, (kind, value), fact, event_unique, event_known)

        if target is None:
            target = new_profile()
            self.profiles[target.profile_id] = target
        for via, other, reason in skipped:
            self.conflicts.append(Conflict(target.profile_id, other, via, reason, fact))

        self._link_unowned(target, identifiers, fact)
        apply_event(target, fact)
        self.assignments[(fact.source, fact.message_id)] = target.profile_id
        return target

    def current(self, profile_id: uuid.UUID) -> uuid.UUID:
        """The surviving profile for an id, following merges made in this batch."""
        while profile_id in self.redirects:
            profile_id = self.redirects[profile_id]
        return profile_id

    def _try_merge(
        self,
        target: ProfileState,
        owner: ProfileState,
        via: IdKey,
        fact: EventFact,
        event_unique: dict[str, str],
        event_known: bool,
    ) -> None:
        separated = owner.profile_id in self.apart.get(target.profile_id, ())
        reason = _refusal(target, owner, via, event_unique, event_known, separated)
        if reason:
            self.conflicts.append(Conflict(target.profile_id, owner.profile_id, via, reason, fact))
            return
        # the event tied the two: one of its identifiers belongs to the merged profile (`matched`)
        # while the event joined the surviving one through another; all of them are evidence
        evidence = {
            "matched": {"type": via[0], "value": via[1]},
            "event_identifiers": [
                {"type": kind, "value": value, "owner": str(self.owners.get((kind, value)) or "")}
                for kind, value, _raw in fact.identifiers
            ],
            "event": [fact.source, fact.message_id],
            "target_unique_ids": dict(target.unique_ids),
            "merged_unique_ids": dict(owner.unique_ids),
        }
        merge_into(target, owner)
        self.redirects[owner.profile_id] = target.profile_id
        self._move_separations(owner.profile_id, target.profile_id)
        for key, profile_id in self.owners.items():
            if profile_id == owner.profile_id:
                self.owners[key] = target.profile_id
        rule = f"shared_{via[0]}"
        self.merges.append(Merge(target.profile_id, owner.profile_id, rule, evidence, fact))

    def _move_separations(self, merged: uuid.UUID, surviving: uuid.UUID) -> None:
        """Whoever was kept apart from the merged profile is now kept apart from the survivor."""
        for other in self.apart.pop(merged, set()):
            self.apart[other].discard(merged)
            self.apart[other].add(surviving)
            self.apart.setdefault(surviving, set()).add(other)

    def _link_unowned(
        self, target: ProfileState, identifiers: list[list[str]], fact: EventFact
    ) -> None:
        for kind, value, raw in identifiers:
            owner_id = self.owners.get((kind, value))
            if owner_id is not None:
                if self.current(owner_id) == target.profile_id:
                    self.links.append(Link((kind, value), raw, target.profile_id, fact))
                continue
            if kind in UNIQUE_PER_PROFILE and target.unique_ids.get(kind, value) != value:
                continue  # the profile already has another userId / CRM id
            self.owners[(kind, value)] = target.profile_id
            self.links.append(Link((kind, value), raw, target.profile_id, fact))
            if kind in UNIQUE_PER_PROFILE:
                target.unique_ids[kind] = value
            if TRUST.get(kind) == STRONG:
                target.has_strong_id = True


def _refusal(
    target: ProfileState,
    owner: ProfileState,
    via: IdKey,
    event_unique: dict[str, str],
    event_known: bool,
    separated: bool = False,
) -> str | None:
    if separated:
        return _KEPT_APART
    # The owner must agree with the target and with the event: the event's userId does not
    # stand in for the owner's, or a shared email would merge two different userIds.
    if not (
        _compatible(target.unique_ids, owner.unique_ids)
        and _compatible(event_unique, owner.unique_ids)
    ):
        return _UNIQUE_CLASH
    # An event carrying a strong identifier is a known customer even before it is linked.
    target_known = target.has_strong_id or event_known
    if TRUST.get(via[0]) != STRONG and target_known and owner.has_strong_id:
        return f"{via[0]} is too weak to merge two known customers"
    return None


def _join_refusal(
    kind: str, owner: ProfileState, event_unique: dict[str, str], event_known: bool
) -> str | None:
    """Why an event may not join the owner of one of its identifiers, if it may not."""
    if not _compatible(event_unique, owner.unique_ids):
        return _UNIQUE_CLASH
    # strong identifiers rank first, so the event's own ones are all new here: a shared
    # device would tie a second known customer to the first
    if TRUST.get(kind) != STRONG and event_known and owner.has_strong_id:
        return f"{kind} is too weak to join a known customer to another"
    return None


def _compatible(a: dict[str, str], b: dict[str, str]) -> bool:
    return all(b.get(kind, value) == value for kind, value in a.items())


def _rank(kind: str) -> int:
    return PRIORITY.index(kind) if kind in PRIORITY else len(PRIORITY)
