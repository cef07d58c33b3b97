"""The router's one error model: typed exceptions rendered in OpenAI's error shape.

Every failure a client can see is an `APIError` subclass carrying its HTTP
status, OpenAI error `type`, `code` and offending `param`. Handlers installed by
`install_handlers` turn them, and FastAPI's own validation and HTTP errors, into
`{"error": {"message", "type", "param", "code"}}` so that the official clients
raise the right exception class.
"""

from __future__ import annotations

import json

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response


class APIError(Exception):
    """Base of all client-visible errors."""

    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.retry_after = retry_after

    def body(self) -> bytes:
        return error_body(self.message, self.type, self.code, self.param)

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"retry-after": str(max(1, int(self.retry_after + 0.999)))}


class InvalidRequest(APIError):
    status = 400
    type = "invalid_request_error"


class AuthenticationFailed(APIError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class ModelNotFound(APIError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class Forbidden(APIError):
    status = 403
    type = "permission_error"
    code = "forbidden"


class NotFound(APIError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class MethodNotAllowed(APIError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"

    def __init__(self, message: str, *, allow: str) -> None:
        super().__init__(message)
        self.allow = allow

    def headers(self) -> dict[str, str]:
        return {"allow": self.allow}  # required with a 405 (RFC 9110, 15.5.6)


class BodyTooLarge(APIError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class BodyIncomplete(APIError):
    """The body stopped arriving: the client left or the edge's deadline passed."""

    status = 408
    type = "invalid_request_error"
    code = "request_timeout"


class RateLimited(APIError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class Overloaded(APIError):
    """The queue for a model's backends is full: shed load quickly."""

    status = 503
    type = "server_error"
    code = "server_overloaded"


class NoHealthyBackend(APIError):
    status = 503
    type = "server_error"
    code = "no_healthy_backend"


class UpstreamFailed(APIError):
    """The engine failed after the request left the router (timeout, reset)."""

    status = 502
    type = "server_error"
    code = "upstream_error"


class UpstreamTimeout(UpstreamFailed):
    status = 504
    code = "upstream_timeout"


def error_body(message: str, type_: str, code: str | None, param: str | None) -> bytes:
    payload = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return json.dumps(payload).encode()


def error_response(exc: APIError, request_id: str | None = None) -> Response:
    headers = exc.headers()
    if request_id:
        headers["x-request-id"] = request_id
    return Response(exc.body(), status_code=exc.status, headers=headers,
                    media_type="application/json")


def install_handlers(app: FastAPI) -> None:
    """Render framework-raised errors in OpenAI's shape too (400, not FastAPI's 422)."""

    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, APIError)
        return error_response(exc, getattr(request.state, "request_id", None))

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return error_response(InvalidRequest(str(first.get("msg", "invalid request")),
                                             param=param))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        mapped: APIError
        if exc.status_code == 404:
            mapped = NotFound(f"no route for {request.method} {request.url.path}")
        elif exc.status_code == 405:
            # Starlette's router names the route's methods; its static files do not.
            allow = (exc.headers or {}).get("Allow", "GET, HEAD")
            mapped = MethodNotAllowed(f"method {request.method} not allowed here", allow=allow)
        else:
            mapped = InvalidRequest(str(exc.detail))
            mapped.status = exc.status_code
        return error_response(mapped)

    app.add_exception_handler(APIError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
