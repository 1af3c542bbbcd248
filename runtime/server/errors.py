"""Errors in OpenAI's JSON shape, and the handlers that turn exceptions into them.

Every error the server returns looks like OpenAI's (and vLLM's):
    {"error": {"message": "...", "type": "BadRequestError", "param": "temperature", "code": 400}}
A request the user got wrong is a 400 with one sentence naming the fix; our own bugs are a 500
whose traceback goes to the log, never to the client.
"""
from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger("runtime.server")

# HTTP status -> the error "type" vLLM and OpenAI's clients use for it.
_ERROR_TYPES = {
    HTTPStatus.BAD_REQUEST: "BadRequestError",
    HTTPStatus.UNAUTHORIZED: "AuthenticationError",
    HTTPStatus.NOT_FOUND: "NotFoundError",
    HTTPStatus.METHOD_NOT_ALLOWED: "MethodNotAllowedError",
    HTTPStatus.SERVICE_UNAVAILABLE: "ServiceUnavailableError",
    HTTPStatus.INTERNAL_SERVER_ERROR: "InternalServerError",
}


class ServerError(Exception):
    """An error to answer with: HTTP status, a one-sentence message and the offending field."""

    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST,
                 param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = HTTPStatus(status)
        self.param = param


def bad_request(message: str, param: str | None = None, fields=()) -> ServerError:
    """A 400; without `param`, the message's first word names it when it is one of `fields`."""
    if param is None and message.split(" ", 1)[0] in fields:
        param = message.split(" ", 1)[0]
    return ServerError(message, HTTPStatus.BAD_REQUEST, param)


def error_body(message: str, status: HTTPStatus, param: str | None = None) -> dict:
    """The JSON body of an error response (also sent as one SSE event when a stream fails)."""
    status = HTTPStatus(status)
    return {"error": {
        "message": message,
        "type": _ERROR_TYPES.get(status, status.phrase.replace(" ", "") + "Error"),
        "param": param,
        "code": status.value,
    }}


def error_response(message: str, status: HTTPStatus, param: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, status, param), status_code=HTTPStatus(status).value)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    """pydantic's errors as one readable line, and the first offending field."""
    parts, param = [], None
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        if err.get("type") == "json_invalid":
            return "The request body is not valid JSON; send a JSON object.", None
        field = ".".join(loc)
        param = param or (loc[0] if loc else None)
        # a model validator's own sentence, without pydantic's "Value error, " prefix
        msg = str(err.get("ctx", {}).get("error", err.get("msg"))) if err.get("type") == "value_error" \
            else str(err.get("msg"))
        parts.append(f"{field}: {msg}" if field else msg)
    message = "; ".join(parts)
    return message if message.endswith(".") else message + ".", param


def install_error_handlers(app: FastAPI) -> None:
    """Answer every failure in OpenAI's error shape; request validation errors are 400, not 422."""

    @app.exception_handler(ServerError)
    async def _server_error(_: Request, exc: ServerError) -> JSONResponse:
        return error_response(exc.message, exc.status, exc.param)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return error_response(message, HTTPStatus.BAD_REQUEST, param)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        status = HTTPStatus(exc.status_code)
        message = exc.detail if isinstance(exc.detail, str) else status.phrase
        if status == HTTPStatus.NOT_FOUND:
            message = f"No route {request.method} {request.url.path}; see /v1/models, " \
                      "/v1/completions, /v1/chat/completions."
        return error_response(message, status)

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("Internal error while serving %s %s", request.method, request.url.path)
        return error_response(f"Internal server error: {type(exc).__name__}: {exc}",
                              HTTPStatus.INTERNAL_SERVER_ERROR)
