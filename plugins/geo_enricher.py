"""Geo enrichment: country from the client's IP address with geoip2fast's bundled data.

The wheel's data has countries, not cities; `city` is set only where the data has it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from c360.events.model import Event
from c360.hookspecs import hookimpl
from c360.settings import Settings


@hookimpl
def c360_enrich_event(event: Event, client_ip: str | None, settings: Settings) -> None:
    """Set `context.geo` from `context.ip` (as sent) or the request's address."""
    ip = event.context.get("ip") or client_ip
    if not isinstance(ip, str) or not ip:
        return
    geo = lookup(ip)
    if geo:
        event.context["geo"] = dict(geo)  # a copy: the cached dict is shared by every lookup


@lru_cache(maxsize=65_536)
def lookup(ip: str) -> dict[str, Any] | None:
    """Country (and city where known) for an address; None for unknown or invalid ones."""
    try:
        result = _database().lookup(ip)
    except Exception:  # geoip2fast raises plain exceptions on malformed addresses
        return None
    if result.is_private:
        return {"private": True}
    if not result.country_code or result.country_code == "--":
        return None
    geo: dict[str, Any] = {"country": result.country_code, "countryName": result.country_name}
    city = _city_name(getattr(result, "city", None))
    if city:
        geo["city"] = city
    return geo


def _city_name(city: Any) -> str | None:
    """geoip2fast gives a `CityDetail` object (empty with the country-only data), not text."""
    name = getattr(city, "name", city)
    return name if isinstance(name, str) and name else None


@lru_cache(maxsize=1)
def _database() -> Any:
    from geoip2fast import GeoIP2Fast

    return GeoIP2Fast(verbose=False)
