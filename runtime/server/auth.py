"""The API-key check: /v1 routes need `Authorization: Bearer <key>`; health, metrics, version,
tokenize and detokenize stay open, as in vLLM. A plain ASGI middleware, so streamed responses
pass through untouched."""
from __future__ import annotations

import hmac
from http import HTTPStatus

from runtime.server.errors import error_response


class ApiKeyMiddleware:
    def __init__(self, app, api_key: str) -> None:
        self.app = app
        self.expected = f"Bearer {api_key}".encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1") and scope["method"] != "OPTIONS":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                response = error_response("Unauthorized: send a valid API key as 'Authorization: Bearer <key>'.",
                                          HTTPStatus.UNAUTHORIZED)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
