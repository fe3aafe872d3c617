"""The browser interface's routes, template set-up and static files, handed to the app by the
appliance (the core knows nothing of the UI)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

import jinja2
from litestar import Router
from litestar.datastructures import CacheControlHeader
from litestar.exceptions import NotFoundException
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from c360.errors import InputError
from c360.ui.pages import (
    agents,
    analytics,
    common,
    customers,
    exports,
    login,
    ltv,
    overview,
    pipeline,
    segments,
)

# -- administration, governance and report pages (helper D2's modules) ----------------------
from c360.ui.pages.admin import HANDLERS as ADMIN_PAGES
from c360.ui.pages.governance import HANDLERS as GOVERNANCE_PAGES
from c360.ui.pages.reports import HANDLERS as REPORT_PAGES

admin_handlers: list[Any] = [*ADMIN_PAGES, *GOVERNANCE_PAGES, *REPORT_PAGES]
# -- end of D2's block ------------------------------------------------------------------------

#: Static files are served for a day; a new c360 version changes their content, not their
#: names, so keep it short enough that an upgrade reaches browsers the next day.
STATIC_MAX_AGE_S = 86_400


def route_handlers() -> list[Any]:
    """Every page, fragment and static-file route of the UI."""
    pages = Router(
        path="/",
        route_handlers=[
            *login.HANDLERS,
            *overview.HANDLERS,
            *customers.HANDLERS,
            *segments.HANDLERS,
            *analytics.HANDLERS,
            *ltv.HANDLERS,
            *pipeline.HANDLERS,
            *exports.HANDLERS,
            *agents.HANDLERS,
            *admin_handlers,
        ],
        exception_handlers={
            InputError: common.error_page,
            NotFoundException: common.not_found_page,
        },
        include_in_schema=False,
    )
    static = create_static_files_router(
        path="/static",
        directories=[_package_folder("static")],
        opt={"public": True},
        include_in_schema=False,
        name="static",
        cache_control=CacheControlHeader(max_age=STATIC_MAX_AGE_S),
    )
    return [pages, static]


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    """Litestar's TemplateConfig for the UI's Jinja2 templates, autoescaped: a trait value
    holding HTML or script renders as text."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_package_folder("templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a misspelt name fails the test, not the customer
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(common.TEMPLATE_FILTERS)
    environment.tests.update(common.TEMPLATE_TESTS)
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment))


def _package_folder(name: str) -> Path:
    """A folder shipped inside the c360.ui package (a real folder: wheels install unzipped)."""
    return Path(str(files("c360.ui") / name))
