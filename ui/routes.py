"""The browser interface's routes, template set-up and static files, handed to the app by the
appliance (the core knows nothing of the UI)."""

from __future__ import annotations

from typing import Any


def route_handlers() -> list[Any]:
    """Every page, fragment and static-file route of the UI."""
    return []


def template_config() -> Any:
    """Litestar's TemplateConfig for the UI's Jinja2 templates (None until pages exist)."""
    return None
