"""OPTIONS answers that name every method of a path.

Litestar 2 answers OPTIONS itself with an Allow header taken from the
handlers of a path's first registration (litestar#4169, fixed in 3.0): a
path whose handlers register one after another (a controller's, or a list's)
answers with the first one's methods only. A path that already has an
OPTIONS handler gets none from Litestar, so ``with_options`` puts one first
for every path that several handlers share, its Allow header computed from
those handlers: nothing to keep in step by hand, and no dependence on the
order in which the handlers are declared or named
(tests/api/test_api_contract.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from litestar import Controller, HttpMethod, Response, route
from litestar.handlers import BaseRouteHandler, HTTPRouteHandler
from litestar.status_codes import HTTP_204_NO_CONTENT


def allow(path: str, methods: set[str]) -> HTTPRouteHandler:
    """An OPTIONS handler for ``path`` naming ``methods`` and OPTIONS."""
    headers = {"Allow": ", ".join(sorted({*methods, "OPTIONS"}))}

    async def options() -> Response[None]:
        return Response(None, status_code=HTTP_204_NO_CONTENT, headers=headers)

    return route(
        path,
        http_method=HttpMethod.OPTIONS,
        status_code=HTTP_204_NO_CONTENT,
        include_in_schema=False,
        name=f"OPTIONS {path}",
    )(options)


def with_options(handlers: Sequence[Any]) -> list[Any]:
    """``handlers``, after an OPTIONS handler for each path they share."""
    methods: dict[str, set[str]] = {}
    shared: set[str] = set()
    for handler in handlers:
        if isinstance(handler, HTTPRouteHandler):
            for path in handler.paths:
                if path in methods:
                    shared.add(path)
                methods.setdefault(path, set()).update(handler.http_methods)
    return [*(allow(path, methods[path]) for path in sorted(shared)), *handlers]


class Resource(Controller):
    """A controller whose shared paths answer OPTIONS with every method."""

    def get_route_handlers(self) -> list[BaseRouteHandler]:
        return with_options(super().get_route_handlers())
