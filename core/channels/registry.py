"""Which channels this c360 has: those the `c360_channels(settings)` hook returns, built-in
plugins (c360.plugins.channel_*) and outside ones alike. A channel appears only when its
settings are present (SMS needs a Twilio account, Zalo an app id...). Touches nothing.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Any

from c360.channels.base import Channel
from c360.errors import PluginError
from c360.plugins_manager import default_manager
from c360.settings import Settings

log = logging.getLogger(__name__)

#: Channels built for this many settings objects are kept: a process has one, tests a few,
#: and a channel may hold a connection pool worth reusing between sends.
_CACHED_SETTINGS = 8

_cache: OrderedDict[int, tuple[Settings, dict[str, Channel]]] = OrderedDict()
_lock = threading.Lock()


def channels_for(settings: Settings) -> dict[str, Channel]:
    """The configured channels by name, built once per settings object."""
    with _lock:
        cached = _cache.get(id(settings))
        # the settings object itself is kept with its channels, so its id cannot be reused
        if cached is not None and cached[0] is settings:
            _cache.move_to_end(id(settings))
            return cached[1]
    built = _build(settings)
    with _lock:
        _cache[id(settings)] = (settings, built)
        while len(_cache) > _CACHED_SETTINGS:
            _cache.popitem(last=False)
    return built


def route_handlers(settings: Settings) -> list[Any]:
    """Every configured channel's inbound routes (webhooks, status callbacks, sockets)."""
    return [
        handler
        for channel in channels_for(settings).values()
        for handler in channel.route_handlers()
    ]


def _build(settings: Settings) -> dict[str, Channel]:
    found: dict[str, Channel] = {}
    for provided in default_manager().hook.c360_channels(settings=settings):
        for channel in provided or ():
            if not isinstance(channel, Channel):
                raise PluginError(
                    f"a c360_channels hook returned {channel!r}, which is not a Channel: it "
                    "needs a `name`, `send(message)` and `route_handlers()`"
                )
            if channel.name in found:
                raise PluginError(
                    f"two plugins provide a channel named {channel.name!r}: uninstall one, "
                    "or give one another name"
                )
            found[channel.name] = channel
    log.debug("Channels configured: %r.", sorted(found))
    return found
