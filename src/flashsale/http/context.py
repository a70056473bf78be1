"""How a handler reaches the use cases: the lifespan puts the worker's
Services on the app's state, and handlers read them from there; the
worker's budgets for spooled reads and open streams live there too."""

from __future__ import annotations

from litestar.datastructures import State

from flashsale.http.spool import Spools
from flashsale.http.streams import StreamGate
from flashsale.service.services import Services

_KEY = "services"
_SPOOLS = "spools"
_STREAMS = "streams"


def put_services(state: State, services: Services) -> None:
    state[_KEY] = services


def services_of(state: State) -> Services:
    services: Services = state[_KEY]
    return services


def put_budgets(state: State, spools: Spools, streams: StreamGate) -> None:
    state[_SPOOLS] = spools
    state[_STREAMS] = streams


def spools_of(state: State) -> Spools:
    spools: Spools = state[_SPOOLS]
    return spools


def streams_of(state: State) -> StreamGate:
    streams: StreamGate = state[_STREAMS]
    return streams
