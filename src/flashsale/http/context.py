"""How a handler reaches the use cases: the lifespan puts the worker's
Services on the app's state, and handlers read them from there."""

from __future__ import annotations

from litestar.datastructures import State

from flashsale.service.services import Services

_KEY = "services"


def put_services(state: State, services: Services) -> None:
    state[_KEY] = services


def services_of(state: State) -> Services:
    services: Services = state[_KEY]
    return services
