"""Which profile traits the probabilistic matcher compares: Segment's reserved identify traits
(and their common spellings). A deployment adds fields, say a national id held in a custom
trait, with a plugin of its own implementing the same hook."""

from __future__ import annotations

from c360.hookspecs import hookimpl


@hookimpl
def c360_profile_match_fields() -> list[tuple[str, str, list[str]]]:
    """Names, birthday, email, phone and the postal address."""
    return [
        ("first_name", "given_name", ["firstName", "first_name", "given_name"]),
        ("last_name", "surname", ["lastName", "last_name", "surname"]),
        ("birthday", "date_of_birth", ["birthday", "date_of_birth", "dob"]),
        ("email", "email", ["email"]),
        ("phone", "phone", ["phone", "phone_number", "phoneNumber"]),
        ("street", "address", ["address.street", "address.street_address", "address.line1"]),
        ("city", "city", ["address.city"]),
        ("postal_code", "postcode", ["address.postalCode", "address.postal_code", "address.zip"]),
        ("state", "state", ["address.state", "address.region"]),
    ]
