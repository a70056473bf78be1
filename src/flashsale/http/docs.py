"""The API's documentation: the OpenAPI document at /openapi.json, and
Swagger UI at /docs, served from this server rather than a CDN, so the docs
work on networks that reach only the service (the scripts come from the
swagger-ui-py wheel, a locked dependency like any other)."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path
from typing import Any

import msgspec
from litestar import Litestar, MediaType, Request, Response, get
from litestar.datastructures import CacheControlHeader
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.router import Router
from litestar.static_files import create_static_files_router

from flashsale import __version__
from flashsale.http.openapi import ADMIN_SECURITY

DOCS_PATH = "/docs"
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


def openapi_config() -> OpenAPIConfig:
    """OpenAPI 3.1, with Swagger UI at /docs (its JSON also at
    /docs/openapi.json); /openapi.json is served by ``openapi_json``."""
    return OpenAPIConfig(
        title="flashsale",
        version=__version__,
        description=(
            "A flash-sale coupon service. Every error body is "
            '`{"error": "<code>", "message": "<text>"}`: `error` is a stable code to '
            "branch on. Unknown routes answer 404 `not_found`, a known route with "
            "another method 405 `method_not_allowed`."
        ),
        path=DOCS_PATH,
        render_plugins=[swagger_ui()],
        components=Components(
            security_schemes={
                ADMIN_SECURITY: SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description="Needed by admin routes only when ADMIN_TOKEN is set "
                    "(without it they are open, and the server logs a warning).",
                )
            }
        ),
    )


@get("/openapi.json", include_in_schema=False, media_type=MediaType.JSON, sync_to_thread=False)
def openapi_json(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The schema at the conventional root path, encoded once per process."""
    state = request.app.state
    encoded: bytes | None = state.get("openapi_json")
    if encoded is None:
        encoded = state["openapi_json"] = encode_schema(request.app)
    return Response(encoded, media_type=MediaType.JSON)


def encode_schema(app: Litestar) -> bytes:
    """The document as JSON (its examples are msgspec structs until encoded)."""
    return msgspec.json.encode(app.openapi_schema.to_schema())


def docs_handlers() -> list[HTTPRouteHandler | Router]:
    return [openapi_json, swagger_assets()]
