"""Every failure becomes ``{"error": <code>, "message": <text>}`` here, in one
place. No stack trace, SQL or driver text ever reaches a client."""

from __future__ import annotations

from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
    HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    HTTP_415_UNSUPPORTED_MEDIA_TYPE,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_429_TOO_MANY_REQUESTS,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from litestar.types import ExceptionHandlersMap

from flashsale.domain import (
    AlreadyClaimed,
    AlreadyRedeemed,
    AmountBelowClaimed,
    ClaimNotFound,
    CouponExists,
    CouponNotFound,
    DestinationRefused,
    DomainError,
    EntriesClosed,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    InvalidCoupon,
    InvalidDrawAt,
    NotStarted,
    Paused,
    RaffleDrawing,
    RaffleDrawn,
    RaffleEntriesExist,
    RaffleNeedsIdentities,
    SaleEnded,
    ServiceUnavailable,
    SoldOut,
    TooManyKeys,
    WebhookNotFound,
)
from flashsale.http.schemas import ErrorResponse
from flashsale.logs import get_logger

log = get_logger("flashsale.http")


class RequestError(Exception):
    """A request the HTTP layer refuses before any use case runs (a transport
    matter: framing, media type, a malformed parameter), not a domain error."""

    status = HTTP_400_BAD_REQUEST
    code = "invalid_request"
    headers: dict[str, str] | None = None  # extra response headers (a 401's challenge)

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(RequestError):
    pass


class UnsupportedMediaType(RequestError):
    status = HTTP_415_UNSUPPORTED_MEDIA_TYPE
    code = "unsupported_media_type"


class PayloadTooLarge(RequestError):
    """What Litestar's own limit answers (RequestEntityTooLarge), for the
    endpoints that read their body themselves (http/claims.py)."""

    status = HTTP_413_REQUEST_ENTITY_TOO_LARGE
    code = "payload_too_large"


DOMAIN_STATUS: dict[type[DomainError], int] = {
    CouponExists: HTTP_409_CONFLICT,
    CouponNotFound: HTTP_404_NOT_FOUND,
    AlreadyClaimed: HTTP_409_CONFLICT,
    SoldOut: HTTP_409_CONFLICT,
    NotStarted: HTTP_409_CONFLICT,
    SaleEnded: HTTP_409_CONFLICT,
    Paused: HTTP_409_CONFLICT,
    ClaimNotFound: HTTP_404_NOT_FOUND,
    AlreadyRedeemed: HTTP_409_CONFLICT,
    AmountBelowClaimed: HTTP_409_CONFLICT,
    InvalidCoupon: HTTP_400_BAD_REQUEST,
    EntriesClosed: HTTP_409_CONFLICT,
    RaffleDrawn: HTTP_409_CONFLICT,
    RaffleNeedsIdentities: HTTP_409_CONFLICT,
    RaffleEntriesExist: HTTP_409_CONFLICT,
    RaffleDrawing: HTTP_409_CONFLICT,
    InvalidDrawAt: HTTP_400_BAD_REQUEST,
    WebhookNotFound: HTTP_404_NOT_FOUND,
    DestinationRefused: HTTP_400_BAD_REQUEST,
    IdempotencyKeyReused: HTTP_422_UNPROCESSABLE_ENTITY,
    IdempotencyKeyInUse: HTTP_409_CONFLICT,
    TooManyKeys: HTTP_429_TOO_MANY_REQUESTS,
    ServiceUnavailable: HTTP_503_SERVICE_UNAVAILABLE,
}

# Codes for the framework's own HTTP errors (routing, limits, parsing).
HTTP_CODES: dict[int, str] = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    503: "service_unavailable",
}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response[ErrorResponse]:
    return Response(
        ErrorResponse(error=code, message=message),
        status_code=status,
        media_type=MediaType.JSON,
        headers=headers,
    )


def status_of(error: DomainError | RequestError) -> tuple[int, dict[str, str] | None]:
    """The status and extra headers a client error is answered with."""
    if isinstance(error, RequestError):
        return error.status, error.headers
    status = DOMAIN_STATUS.get(type(error), HTTP_400_BAD_REQUEST)
    if isinstance(error, ServiceUnavailable | TooManyKeys):
        return status, {"Retry-After": str(error.retry_after)}
    return status, None


def domain_error(
    _: Request[Any, Any, Any], error: DomainError | RequestError
) -> Response[ErrorResponse]:
    status, headers = status_of(error)
    return error_response(status, error.code, error.message, headers)


def validation_error(
    _: Request[Any, Any, Any], error: ValidationException
) -> Response[ErrorResponse]:
    return error_response(HTTP_400_BAD_REQUEST, "invalid_request", describe_invalid(error))


def describe_invalid(error: ValidationException) -> str:
    """One sentence naming the field, from msgspec's message when there is one."""
    extra = error.extra if isinstance(error.extra, list) else []
    for item in extra:
        if isinstance(item, dict) and item.get("message"):
            message = str(item["message"])
            key = item.get("key")
            return f"{message} (field {key!r})" if key and "`$." not in message else message
    return "the request body must be a JSON object with the documented fields"


def http_error(_: Request[Any, Any, Any], error: HTTPException) -> Response[ErrorResponse]:
    code = HTTP_CODES.get(error.status_code, "http_error")
    headers = dict(error.headers) if error.headers else None
    return error_response(error.status_code, code, _plain_detail(error), headers)


def _plain_detail(error: HTTPException) -> str:
    detail = error.detail or "request failed"
    return detail[:200]


INTERNAL_ERROR = ErrorResponse(
    error="internal_error", message="the server failed to handle the request"
)


def log_unexpected(error: Exception, route: str | None, method: str) -> None:
    """The traceback goes to the log, never to the client."""
    log.error(
        "unexpected error while handling a request",
        exc_info=error,
        route=route,
        method=method,
        error_code="internal_error",
    )


def unexpected_error(request: Request[Any, Any, Any], error: Exception) -> Response[ErrorResponse]:
    log_unexpected(error, request.scope.get("path_template"), request.method)
    return Response(
        INTERNAL_ERROR, status_code=HTTP_500_INTERNAL_SERVER_ERROR, media_type=MediaType.JSON
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    DomainError: domain_error,
    RequestError: domain_error,
    ValidationException: validation_error,
    HTTPException: http_error,
    Exception: unexpected_error,
}
