"""Structured logs: one JSON object per line, from structlog and from stdlib
logging alike (Granian, asyncpg, Litestar), with the request id when a
request is being handled.

``configure_logging`` runs in the CLI process and again in every worker
(``create_app``); ``logging_config`` is the dictConfig Granian applies in its
own processes, so its lines come out as the same JSON.
"""

from __future__ import annotations

import logging
import logging.config
import os
import sys
from collections.abc import Iterable
from contextvars import ContextVar
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from flashsale.config import Settings, redact_dsn, token_entries

# Set per request by the HTTP layer (http/observability.py), read by every log line.
REQUEST_ID: ContextVar[str | None] = ContextVar("flashsale_request_id", default=None)

# Secrets shorter than this are not scrubbed from lines: replacing a short
# word would garble every line, and such a value protects nothing.
_MIN_SECRET_LENGTH = 6
DOCUMENTED_DEFAULT_PASSWORD = Settings().db_password
# Settings shown in the start-up line only as "<field>_set": true or false.
SECRET_FIELDS = ("admin_token", "backend_token", "metrics_token", "jwt_hmac_secret")
_secrets: set[str] = set()
_configured_level: str | None = None


def add_request_id(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    request_id = REQUEST_ID.get()
    if request_id is not None:
        event_dict.setdefault("request_id", request_id)
    return event_dict


def add_pid(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Workers are separate processes: say which one wrote the line."""
    event_dict["pid"] = os.getpid()
    return event_dict


def scrub_secrets(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Last line of defence: a registered secret never leaves in a string value."""
    if not _secrets:
        return event_dict
    for key, value in event_dict.items():
        if isinstance(value, str):
            event_dict[key] = _scrub(value)
    return event_dict


def _scrub(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text


def register_secrets(values: Iterable[str | None]) -> None:
    """Values (passwords, tokens) that must never appear in a log line."""
    _secrets.update(v for v in values if v and len(v) >= _MIN_SECRET_LENGTH)


def _shared_processors() -> list[Processor]:
    """What both structlog's and stdlib's records go through before rendering."""
    return [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_request_id,
        add_pid,
    ]


def json_formatter() -> structlog.stdlib.ProcessorFormatter:
    """The one formatter of every handler (referenced by logging_config)."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_shared_processors(), structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Frames without their local variables: a driver's locals hold the
            # DSN and password (asyncpg's connect), beyond scrub_secrets' reach.
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            scrub_secrets,
            structlog.processors.JSONRenderer(),
        ],
    )


def logging_config(level: str) -> dict[str, Any]:
    """dictConfig for stdlib logging: everything to stdout as JSON. Granian's
    loggers are named so that its own (plain text) handlers are replaced."""
    level_name = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.json_formatter"}},
        "handlers": {"stdout": {"class": f"{__name__}.StdoutHandler", "formatter": "json"}},
        "root": {"handlers": ["stdout"], "level": level_name},
        "loggers": {
            "_granian": {"handlers": ["stdout"], "level": level_name, "propagate": False},
            "granian.access": {"handlers": ["stdout"], "level": level_name, "propagate": False},
            # httpx logs each request's URL at INFO and httpcore its hosts at
            # DEBUG: a URL is no log material (it may carry a token).
            "httpx": {"level": "WARNING"},
            "httpcore": {"level": "WARNING"},
        },
    }


class StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stdout is at the time (a test runner swaps it)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


def configure_logging(level: str = "info") -> None:
    """Idempotent: the CLI process calls it, then each worker (through
    create_app, which a test may call many times)."""
    global _configured_level
    if _configured_level == level:
        return
    _configured_level = level
    logging.config.dictConfig(logging_config(level))
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,  # first: a dropped line costs nothing more
            *_shared_processors(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


def public_settings(settings: Settings) -> dict[str, object]:
    """Settings as a dict fit for a log line: no password, no token."""
    shown: dict[str, object] = {}
    for field in settings.__struct_fields__:
        value = getattr(settings, field)
        if field == "db_password":
            continue
        if field in SECRET_FIELDS:
            shown[f"{field}_set"] = value is not None
        elif field in ("database_url", "migration_database_url") and value is not None:
            shown[field] = redact_dsn(value)
        elif isinstance(value, Enum | Path):
            shown[field] = str(value)
        else:
            shown[field] = value
    return shown


def protect_secrets(settings: Settings) -> None:
    """Scrub this configuration's password and token from any line that would
    quote them (a driver message with a URL, say)."""
    secrets: list[str | None] = [settings.jwt_hmac_secret]
    for field in ("admin_token", "backend_token", "metrics_token"):
        # each token of a list on its own: a line may quote only one
        secrets += [
            getattr(settings, field),
            *(t for _, t in token_entries(getattr(settings, field), "")),
        ]
    for dsn in {settings.dsn(), settings.migration_dsn()}:
        password = urlsplit(dsn).password
        if password is None or unquote(password) == DOCUMENTED_DEFAULT_PASSWORD:
            continue  # the README's default is no secret, and "postgres" is in every URL
        secrets += [password, unquote(password)]
    register_secrets(secrets)
