"""What to match on: fields with roles, how each role is compared, and the blocking rules.

A deployment describes its records by role (`given_name`, `email`, `postcode`...); the engine
picks the standardisation, the comparison levels and the blocking rules from the roles, so the
same spec serves a CRM bulk load and the incremental match inside F3.
"""

from __future__ import annotations

import dataclasses

#: role -> comparison kind (the levels of each kind are in `compare.KIND_LEVELS`).
ROLE_KIND = {
    "given_name": "name",
    "surname": "name",
    "full_name": "full_name",
    "date_of_birth": "date",
    "email": "email",
    "phone": "phone",
    "street_number": "exact",
    "address": "address",
    "suburb": "place",
    "city": "place",
    "postcode": "code",
    "state": "exact",
    "national_id": "id",
    "text": "address",
    "category": "category",
    "number": "numeric",
}

#: Roles whose exact agreement is worth more for a rare value than a common one.
TF_ROLES = frozenset({"given_name", "surname", "full_name", "suburb", "city", "address"})

#: Roles that identify one person: two records holding different values are never the same
#: person when the deployment says the role is a unique identifier (`MatchSpec.unique`).
IDENTIFIER_ROLES = frozenset({"national_id", "email", "phone"})

#: Parts of an address that say where, not which house.
_LOCALITY_ROLES = frozenset({"suburb", "city", "postcode", "state"})

#: Blocking keys: (field, transform). Transforms: "" the value, "soundex", "prefix3",
#: "prefix5", "first_token", "sorted_tokens", "year". A field "a|b" reads fields a and b as
#: one text.
KeyPart = tuple[str, str]
BlockingRule = tuple[KeyPart, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Field:
    """One column of the records and its role."""

    name: str
    role: str

    @property
    def kind(self) -> str:
        """How the field is compared."""
        return ROLE_KIND[self.role]

    @property
    def term_frequencies(self) -> bool:
        """True when exact agreement is weighed by how common the value is."""
        return self.role in TF_ROLES


@dataclasses.dataclass(frozen=True, slots=True)
class MatchSpec:
    """Fields, blocking rules and decision thresholds of one matching job."""

    fields: tuple[Field, ...]
    blocking: tuple[BlockingRule, ...]
    #: fields whose disagreement blocks a merge whatever the score (a user id, a national id
    #: known to be clean)
    unique: tuple[str, ...] = ()
    #: fields whose outright disagreement (both present, not even nearly alike) sends a pair
    #: above the merge threshold to review instead: twins share a surname, a birthday and an
    #: address, and only their given names tell them apart
    review_on_disagreement: tuple[str, ...] = ()
    #: ... unless one of these agrees exactly (an email address belongs to one person)
    vouched_by: tuple[str, ...] = ()
    #: match probability at or above which two records merge
    merge_threshold: float = 0.9
    #: at or above this (and below merge_threshold) the pair is queued for review
    review_threshold: float = 0.5
    #: a cluster growing past this many records is flagged for review, not merged further
    max_cluster: int = 50
    #: blocks larger than this are skipped (a placeholder value, a very common name)
    max_block: int = 400
    #: a rule that would pair more than this many candidates per record is skipped (and
    #: reported): it is not selective enough for this data
    max_pairs_per_record: float = 2.0
    #: two-letter region for phone numbers written without a country code
    region: str = "AU"

    def name_columns(self) -> tuple[int, int] | None:
        """Indices of the given-name and surname fields, when the spec has both."""
        roles = [field.role for field in self.fields]
        if "given_name" in roles and "surname" in roles:
            return roles.index("given_name"), roles.index("surname")
        return None

    def address_columns(self) -> tuple[int, list[int]] | None:
        """Index of the (first) street address field and of its locality fields."""
        roles = [field.role for field in self.fields]
        if "address" not in roles:
            return None
        locality = [i for i, role in enumerate(roles) if role in _LOCALITY_ROLES]
        return roles.index("address"), locality

    def field(self, name: str) -> Field:
        """The field called `name`."""
        for field in self.fields:
            if field.name == name:
                return field
        raise KeyError(name)


def spec_to_json(spec: MatchSpec) -> dict[str, object]:
    """The spec as plain data (stored beside a trained model)."""
    data = dataclasses.asdict(spec)
    data["fields"] = [[field.name, field.role] for field in spec.fields]
    return data


def spec_from_json(data: dict[str, object]) -> MatchSpec:
    """The spec `spec_to_json` wrote."""
    values: dict = dict(data)
    values["fields"] = tuple(Field(name, role) for name, role in values["fields"])
    values["blocking"] = tuple(
        tuple((field, transform) for field, transform in rule) for rule in values["blocking"]
    )
    values["unique"] = tuple(values["unique"])
    values["review_on_disagreement"] = tuple(values.get("review_on_disagreement", ()))
    values["vouched_by"] = tuple(values.get("vouched_by", ()))
    return MatchSpec(**values)


def spec_for(columns: dict[str, str], **options: object) -> MatchSpec:
    """A spec from column -> role, with blocking rules chosen from the roles present."""
    unknown = sorted(set(columns.values()) - set(ROLE_KIND))
    if unknown:
        raise ValueError(f"unknown field role(s) {unknown}; use one of {sorted(ROLE_KIND)}")
    fields = tuple(Field(name, role) for name, role in columns.items())
    options.setdefault("blocking", default_blocking(fields))
    # customer data with emails: a given name that disagrees outright holds a merge for review
    # unless the email agrees (twins); without emails nothing could vouch, so nothing is held
    has_email = any(field.role == "email" for field in fields)
    options.setdefault(
        "review_on_disagreement",
        tuple(f.name for f in fields if f.role == "given_name" and has_email),
    )
    options.setdefault(
        "vouched_by", tuple(f.name for f in fields if f.role in ("email", "national_id"))
    )
    return MatchSpec(fields=fields, **options)  # type: ignore[arg-type]


def default_blocking(fields: tuple[Field, ...]) -> tuple[BlockingRule, ...]:
    """Blocking rules that keep candidate pairs few while every true pair meets in one.

    Each rule pairs records agreeing on all its keys; a true pair needs to survive only one
    rule, so rules are chosen to fail on different corruptions (a typo in the surname, a moved
    address, a mistyped date).
    """
    by_role: dict[str, list[str]] = {}
    for field in fields:
        by_role.setdefault(field.role, []).append(field.name)

    def first(role: str) -> str | None:
        return by_role.get(role, [None])[0]

    given, surname, dob = first("given_name"), first("surname"), first("date_of_birth")
    full, postcode = first("full_name"), first("postcode")
    street, suburb, city = first("street_number"), first("suburb"), first("city")
    address = first("address")
    rules: list[BlockingRule] = []

    def add(*parts: tuple[str | None, str]) -> None:
        if all(name for name, _ in parts):
            rules.append(tuple((str(name), transform) for name, transform in parts))

    for role in ("email", "phone", "national_id"):
        for name in by_role.get(role, []):
            add((name, ""))
    # people: every rule holds a date, a place or a full name, so blocks stay small at any
    # scale (a name alone, or a street alone, pairs thousands of strangers in a million)
    if given and surname:  # a given name and surname written the wrong way round
        add((f"{given}|{surname}", "sorted_tokens"), (dob, "year"))
    add((surname, "soundex"), (dob, ""))
    add((given, "soundex"), (dob, ""))
    add((surname, "soundex"), (given, "soundex"), (dob, "year"))
    add((given, ""), (surname, ""), (suburb, ""))
    add((given, "prefix3"), (surname, "prefix3"), (postcode, ""))
    add((given, ""), (surname, "prefix3"), (postcode, "prefix3"))
    add((postcode, ""), (street, ""), (given, "prefix3"))
    add((suburb, ""), (street, ""), (given, "prefix3"))
    add((dob, ""), (postcode, ""))
    add((dob, ""), (suburb, ""))
    add((dob, ""), (city, ""))
    add((address, ""), (street, ""), (postcode, ""))
    add((address, ""), (street, ""), (suburb, "prefix3"))
    add((address, "prefix3"), (street, ""), (postcode, ""))
    # broad rules: worth it on small data, skipped by the pair budget when they would pair
    # strangers by the million
    add((given, ""), (surname, ""))
    add((dob, ""))
    for name in by_role.get("national_id", []):
        add((name, "prefix5"))
    add((postcode, ""), (street, ""))
    add((address, ""), (street, ""))
    add((address, "first_token"), (suburb, ""))
    add((address, "prefix3"), (postcode, ""))
    # places and businesses (a full name, an address, a city)
    add((full, "sorted_tokens"))
    add((full, "first_token"), (city, "prefix3"))
    add((full, "prefix3"), (address, "first_token"))
    add((address, ""), (city, "prefix3"))
    return tuple(rules)
