"""The MQTT broker role (the IoT side's entry, used by later work): connection and auth settled
now. Mosquitto started by c360's own `c360.appliance.servers` takes c360's user and password
from `mqtt_url`, delivers what it accepts, and refuses a wrong password and anonymous clients."""

from __future__ import annotations

import threading
import urllib.parse

import paho.mqtt.client as mqtt
import pytest

from c360.settings import load_settings

pytestmark = pytest.mark.timeout(60)


def _connect(url: str, password: str | None = "keep") -> tuple[mqtt.Client, object]:
    """A started client and its CONNACK reason code (or None if none came in 5 s)."""
    parts = urllib.parse.urlsplit(url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    if password is not None:
        client.username_pw_set(parts.username, parts.password if password == "keep" else password)
    answered = threading.Event()
    outcome: dict[str, object] = {}

    def on_connect(_client, _userdata, _flags, reason, _properties) -> None:
        outcome["reason"] = reason
        answered.set()

    client.on_connect = on_connect
    client.connect(parts.hostname, parts.port, keepalive=10)
    client.loop_start()
    answered.wait(5)
    return client, outcome.get("reason")


def test_the_settings_url_connects_and_a_message_goes_round(mosquitto_server) -> None:
    settings = load_settings({"mqtt_url": mosquitto_server.url}, environ={})
    received: list[bytes] = []
    arrived = threading.Event()
    client, reason = _connect(settings.mqtt_url)
    try:
        assert reason is not None and not reason.is_failure
        client.on_message = lambda _c, _u, message: (
            received.append(message.payload),
            arrived.set(),
        )
        client.subscribe("c360/devices/d-1/telemetry", qos=1)
        client.publish("c360/devices/d-1/telemetry", b'{"t": 21.5}', qos=1).wait_for_publish(5)
        assert arrived.wait(5)
        assert received == [b'{"t": 21.5}']
    finally:
        client.loop_stop()
        client.disconnect()


@pytest.mark.parametrize("password", ["wrong-password", None], ids=["wrong", "anonymous"])
def test_a_wrong_password_or_none_is_refused(mosquitto_server, password) -> None:
    client, reason = _connect(mosquitto_server.url, password)
    try:
        assert reason is not None and reason.is_failure
        assert str(reason) == "Not authorized"
    finally:
        client.loop_stop()
        client.disconnect()
