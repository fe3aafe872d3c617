"""The c360 exception tree.

C360Error
├── SettingsError        a setting is missing or invalid; the message names it
├── PluginError          a plugin failed to load or implements an unknown hook
├── EngineError          an embedded engine could not start or stop
├── AdapterError         a bus, lake, store or cache call failed (driver error as __cause__)
│   └── BusUnavailable   the event bus cannot take writes right now
└── InputError           something a client sent is not acceptable (HTTP 4xx)
    ├── PayloadTooLarge  over the event or batch size limit
    └── Unauthorized     no valid write key or token
"""

from __future__ import annotations


class C360Error(Exception):
    """Root of every error c360 raises on purpose."""


class SettingsError(C360Error):
    """A setting is missing or invalid."""


class PluginError(C360Error):
    """A plugin could not be loaded or does not match the hook specs."""


class EngineError(C360Error):
    """An embedded engine (PostgreSQL, Valkey) failed to start or stop."""


class AdapterError(C360Error):
    """A call through an adapter failed; the driver's exception is the cause."""


class BusUnavailable(AdapterError):
    """The event bus cannot accept writes; clients should retry later."""


class InputError(C360Error):
    """Client input that c360 refuses; carries an HTTP status and a stable code."""

    status_code = 400

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class PayloadTooLarge(InputError):
    """A request or event is over the size limit."""

    status_code = 400


class Unauthorized(InputError):
    """The request carries no valid write key or token."""

    status_code = 401
