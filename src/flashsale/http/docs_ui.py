"""Swagger UI at /docs, served from this server rather than a CDN, so the
docs work on networks that reach only the service (the scripts come from
the swagger-ui-py wheel, a locked dependency like any other)."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

from litestar.datastructures import CacheControlHeader
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.router import Router
from litestar.static_files import create_static_files_router

DOCS_ASSETS_PATH = "/docs/assets"
ONE_DAY = 86_400


def swagger_assets_dir() -> Path:
    """The wheel's ``static`` folder, found without importing the package
    (its ``__init__`` pulls in Jinja and framework adapters we do not use)."""
    spec = find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def swagger_ui(path: str = "/") -> SwaggerRenderPlugin:
    return SwaggerRenderPlugin(
        path=path,
        js_url=f"{DOCS_ASSETS_PATH}/swagger-ui-bundle.js",
        css_url=f"{DOCS_ASSETS_PATH}/swagger-ui.css",
        standalone_preset_js_url=f"{DOCS_ASSETS_PATH}/swagger-ui-standalone-preset.js",
        # Litestar's default favicon is a CDN link too.
        favicon=f'<link rel="icon" type="image/png" href="{DOCS_ASSETS_PATH}/favicon-32x32.png">',
    )


def swagger_assets() -> Router:
    return create_static_files_router(
        path=DOCS_ASSETS_PATH,
        directories=[swagger_assets_dir()],
        include_in_schema=False,
        # The files change only with the locked wheel's version.
        cache_control=CacheControlHeader(public=True, max_age=ONE_DAY),
    )
