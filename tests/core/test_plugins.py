"""The plugin manager and the built-in enrichers: a misspelled or mismatched hook fails loudly at
load; the enrichers add facts that still encode as JSON."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime
from typing import Any

import pytest

from c360 import hookspecs
from c360.errors import C360Error, PluginError
from c360.events.model import Event, encode
from c360.hookspecs import hookimpl
from c360.plugins import geo_enricher, user_agent_enricher
from c360.plugins_manager import BUILTIN_PLUGINS, default_manager, make_plugin_manager
from c360.settings import load_settings

NOW = datetime(2026, 1, 1, tzinfo=UTC)
CHROME_ON_ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/121.0.0.0 Mobile Safari/537.36"
)


class MisspelledHook:
    """A plugin with a typo in its hook's name."""

    @hookimpl
    def c360_enrich_evnt(self, event: Any) -> None:
        """Never called: there is no such hook."""


class MismatchedArguments:
    """A plugin whose hook asks for an argument the hook does not pass."""

    @hookimpl
    def c360_enrich_event(self, event: Any, colour: str) -> None:
        """Never called: `colour` is not an argument of the hook."""


class Recorder:
    """A well-formed plugin implementing a subset of a hook's arguments."""

    @hookimpl
    def c360_enrich_event(self, event: Event) -> None:
        """Mark the event."""
        event.context["recorded"] = True


def _event(**context: Any) -> Event:
    return Event(
        message_id="m-1",
        type="track",
        source="web",
        customer_key="u-1",
        received_at=NOW,
        timestamp=NOW,
        context=dict(context),
    )


def test_a_plugin_with_a_misspelled_hook_fails_at_load():
    with pytest.raises(PluginError) as caught:
        make_plugin_manager(entry_points=False, extra=[MisspelledHook()])

    message = str(caught.value)
    assert "c360_enrich_evnt" in message
    assert "misspell" in message
    assert "c360_enrich_event" in message


def test_a_plugin_whose_hook_takes_unknown_arguments_fails_at_load_with_a_plugin_error():
    with pytest.raises(PluginError) as caught:
        make_plugin_manager(entry_points=False, extra=[MismatchedArguments()])

    assert "c360_enrich_event" in str(caught.value)
    assert "colour" in str(caught.value)


def test_a_plugin_error_is_a_c360_error():
    assert issubclass(PluginError, C360Error)


def test_a_well_formed_plugin_is_registered_and_called():
    manager = make_plugin_manager(entry_points=False, extra=[Recorder()])
    event = _event()

    settings = load_settings({}, environ={})

    manager.hook.c360_enrich_event(event=event, client_ip=None, settings=settings)

    assert event.context["recorded"] is True


def test_the_built_in_plugins_are_registered_by_name():
    manager = make_plugin_manager(entry_points=False)

    assert set(BUILTIN_PLUGINS) <= {name for name, _plugin in manager.list_name_plugin()}


def test_the_default_manager_is_built_once():
    assert default_manager() is default_manager()


def test_every_hook_has_a_one_line_docstring():
    hooks = [value for name, value in vars(hookspecs).items() if name.startswith("c360_")]

    assert hooks
    for hook in hooks:
        assert inspect.getdoc(hook) and "\n" not in inspect.getdoc(hook).strip(), hook


# Geo


def test_a_public_address_gets_its_country_as_plain_json():
    geo = geo_enricher.lookup("8.8.8.8")

    assert geo is not None
    assert geo["country"] == "US"
    assert all(isinstance(value, (str, bool)) for value in geo.values())
    encode(geo)


def test_a_private_address_is_marked_private():
    assert geo_enricher.lookup("192.168.1.20") == {"private": True}


@pytest.mark.parametrize("address", ["not-an-ip", "999.1.1.1", ""])
def test_an_invalid_address_has_no_geo(address):
    assert geo_enricher.lookup(address) is None


def test_the_ip_in_the_context_wins_over_the_client_address():
    event = _event(ip="8.8.8.8")

    geo_enricher.c360_enrich_event(event=event, client_ip="10.0.0.1", settings=None)

    assert event.context["geo"]["country"] == "US"


def test_an_ip_that_is_not_text_is_ignored():
    event = _event(ip=12345)

    geo_enricher.c360_enrich_event(event=event, client_ip=None, settings=None)

    assert "geo" not in event.context


def test_changing_one_events_geo_does_not_change_the_next_ones():
    first, second = _event(ip="8.8.8.8"), _event(ip="8.8.8.8")

    geo_enricher.c360_enrich_event(event=first, client_ip=None, settings=None)
    first.context["geo"]["country"] = "changed"
    geo_enricher.c360_enrich_event(event=second, client_ip=None, settings=None)

    assert second.context["geo"]["country"] == "US"


def test_an_enriched_event_with_a_public_ip_encodes():
    event = _event(ip="14.160.0.1")

    geo_enricher.c360_enrich_event(event=event, client_ip=None, settings=None)

    assert event.context["geo"]["country"] == "VN"
    assert b'"country":"VN"' in encode(event)


# User agent


def test_a_user_agent_is_parsed_into_browser_os_and_device():
    parsed = user_agent_enricher.parse(CHROME_ON_ANDROID)

    assert parsed["browser"] == "Chrome Mobile"
    assert parsed["browserVersion"] == "121"
    assert parsed["os"] == "Android"
    assert parsed["osVersion"] == "14"


def test_an_unknown_user_agent_gives_an_empty_result():
    assert user_agent_enricher.parse("\x00" * 10) == {}


def test_an_event_without_a_user_agent_is_left_alone():
    event = _event(userAgent=["not", "text"])

    user_agent_enricher.c360_enrich_event(event=event, client_ip=None, settings=None)

    assert "userAgentParsed" not in event.context


def test_a_very_long_user_agent_is_parsed_from_its_start():
    event = _event(userAgent=CHROME_ON_ANDROID + " x" * 50_000)

    user_agent_enricher.c360_enrich_event(event=event, client_ip=None, settings=None)

    assert event.context["userAgentParsed"]["os"] == "Android"
