"""The plugin manager: built-in plugins, then those installed under the `c360` entry points.

Loading fails loudly when a plugin implements a hook that does not exist (a misspelling).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable
from functools import lru_cache

import pluggy

from c360 import hookspecs
from c360.errors import PluginError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "c360"

#: Built-in features registered through the same hooks as outside plugins.
BUILTIN_PLUGINS = (
    "c360.plugins.identity_rules",
    "c360.plugins.geo_enricher",
    "c360.plugins.user_agent_enricher",
    "c360.plugins.profile_matching",
    "c360.plugins.channel_webchat",
    "c360.plugins.channel_sms_twilio",
    "c360.plugins.channel_zalo",
    "c360.plugins.channel_email",
    "c360.plugins.channel_push",
    "c360.plugins.channel_webhook",
)


def make_plugin_manager(
    builtins: Iterable[str] = BUILTIN_PLUGINS,
    *,
    entry_points: bool = True,
    extra: Iterable[object] = (),
) -> pluggy.PluginManager:
    """A checked plugin manager with the built-ins, outside plugins and `extra` objects."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    for name in builtins:
        _register(manager, importlib.import_module(name), name)
    if entry_points:
        try:
            manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        except pluggy.PluginValidationError as exc:
            raise PluginError(
                f"an installed `c360` plugin does not match the hook specs: {exc}"
            ) from exc
    for plugin in extra:
        _register(manager, plugin, None)
    check(manager)
    return manager


def check(manager: pluggy.PluginManager) -> None:
    """Refuse hook implementations that match no hook spec, naming plugin and hook."""
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(
            f"plugin {manager.get_name(exc.plugin)!r} implements a hook c360 does not have: "
            f"{exc}. Did you misspell a hook name? Known hooks: {sorted(_hook_names())}"
        ) from exc


@lru_cache(maxsize=1)
def default_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, built on first use."""
    return make_plugin_manager()


def _register(manager: pluggy.PluginManager, plugin: object, name: str | None) -> None:
    """Register one plugin; a hook whose arguments do not match its spec is a PluginError."""
    try:
        manager.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        raise PluginError(
            f"plugin {name or plugin!r} does not match c360's hook specs: {exc}. "
            "A hook implementation may take only arguments its hook spec declares."
        ) from exc


def _hook_names() -> list[str]:
    return [name for name in dir(hookspecs) if name.startswith("c360_")]
