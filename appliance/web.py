"""The app the appliance serves: the core's gateway and API with the UI's pages added (the
core knows nothing of the UI, so they meet here)."""

from __future__ import annotations

from litestar import Litestar

from c360.api.app import create_app
from c360.settings import Settings


def web_app(settings: Settings) -> Litestar:
    """The gateway, the JSON API and the browser pages, for these settings."""
    from c360.ui import routes  # the UI only where the appliance serves it

    return create_app(settings, routes.route_handlers(), routes.template_config())
