"""Which channels a c360 has: each built-in channel appears exactly when its settings are all
present, they come from the `c360_channels` hook like an outside plugin's would, a plugin that
returns something else or a second channel of the same name is refused by name, and the
inbound routes of configured channels are mounted as public routes."""

from __future__ import annotations

import dataclasses

import pytest

from c360.channels import registry
from c360.channels.base import OutboundMessage, SendResult
from c360.errors import PluginError
from c360.hookspecs import hookimpl
from c360.plugins_manager import make_plugin_manager
from c360.settings import Settings, load_settings

FULL = {
    "twilio_account_sid": "AC1",
    "twilio_auth_token": "token",
    "twilio_from": "+15005550006",
    "zalo_app_id": "123",
    "zalo_oa_secret": "oa",
    "zalo_refresh_token": "refresh",
    "smtp_host": "127.0.0.1",
    "push_url": "http://127.0.0.1:9",
    "push_project": "p",
    "push_token": "t",
    "webhook_url": "http://127.0.0.1:9/hook",
    "webhook_secret": "s",
}


def settings(**values: object) -> Settings:
    return load_settings(values, environ={})


def test_every_channel_appears_when_its_settings_are_present():
    names = set(registry.channels_for(settings(**FULL)))
    assert {"sms", "zalo", "email", "push", "webhook"} <= names


@pytest.mark.parametrize(
    ("channel", "missing"),
    [
        ("sms", "twilio_from"),
        ("sms", "twilio_auth_token"),
        ("zalo", "zalo_oa_secret"),
        ("zalo", "zalo_refresh_token"),
        ("email", "smtp_host"),
        ("push", "push_token"),
        ("webhook", "webhook_secret"),
    ],
)
def test_a_channel_missing_a_setting_is_not_there(channel: str, missing: str):
    values = {name: value for name, value in FULL.items() if name != missing}
    assert channel not in registry.channels_for(settings(**values))


def test_channels_are_built_once_per_settings_object():
    configured = settings(**FULL)
    assert registry.channels_for(configured) is registry.channels_for(configured)
    assert registry.channels_for(dataclasses.replace(configured)) is not registry.channels_for(
        configured
    )


def test_configured_channels_mount_their_public_webhooks():
    paths = {
        path
        for handler in registry.route_handlers(settings(**FULL))
        for path in handler.paths
        if handler.opt.get("public") is True
    }
    assert {
        "/v1/channels/sms/twilio",
        "/v1/channels/sms/twilio/status",
        "/v1/channels/zalo",
    } <= paths


class Fax:
    name = "sms"

    def send(self, message: OutboundMessage) -> SendResult:
        return SendResult(status="sent")

    def route_handlers(self) -> list:
        return []


class Plugin:
    def __init__(self, provided: list) -> None:
        self.provided = provided

    @hookimpl
    def c360_channels(self, settings: Settings) -> list:
        return self.provided


@pytest.mark.parametrize(
    ("provided", "message"),
    [([Fax()], "two plugins provide a channel named 'sms'"), (["fax"], "not a Channel")],
)
def test_a_bad_or_clashing_channel_plugin_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, provided: list, message: str
):
    manager = make_plugin_manager(entry_points=False, extra=[Plugin(provided)])
    monkeypatch.setattr(registry, "default_manager", lambda: manager)

    with pytest.raises(PluginError, match=message):
        registry.channels_for(settings(**FULL))
