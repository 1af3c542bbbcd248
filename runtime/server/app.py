"""The OpenAI-compatible HTTP app: routes, API-key check and the engine loop's lifetime.

    app = create_app(engine, served_model_name="my-model", api_key="secret")
    uvicorn.run(app, host="127.0.0.1", port=8000)

`engine` is anything with the runtime's engine contract (add_request, abort_request, step,
has_unfinished_requests, stats, tokenizer, max_model_len). The engine loop starts
with the app's lifespan and, on shutdown, aborts whatever is still in flight.
"""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from runtime.server.async_engine import AsyncEngine, EngineDeadError
from runtime.server.auth import ApiKeyMiddleware
from runtime.server.errors import error_response, install_error_handlers
from runtime.server.inputs import chat_prompt, check_model, check_token_ids
from runtime.server.metrics import ServerMetrics
from runtime.server.prometheus import CONTENT_TYPE
from runtime.server.protocol import (ChatCompletionRequest, CompletionRequest, DetokenizeRequest,
                                     TokenizeRequest)
from runtime.server.serving_chat import create_chat_completion
from runtime.server.serving_completion import create_completion
from runtime.server.state import ServerState, engine_max_model_len

logger = logging.getLogger("runtime.server")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("gaudi-aot")
    except PackageNotFoundError:
        return "0.0.0+unknown"


def create_app(engine, *, served_model_name: str | list[str] | None = None, api_key: str | None = None,
               chat_template: str | None = None, model_path: str | None = None) -> FastAPI:
    """Build the FastAPI app around `engine` (see the module docstring).

    served_model_name: the name(s) clients use in `model`; defaults to engine.model_name.
    api_key: when set, /v1 routes need `Authorization: Bearer <api_key>`.
    chat_template: a Jinja template overriding the tokenizer's.
    """
    names = [served_model_name] if isinstance(served_model_name, str) else list(served_model_name or [])
    if not names:
        names = [str(getattr(engine, "model_name", None) or model_path or "model")]
    max_model_len = engine_max_model_len(engine)
    metrics = ServerMetrics(names[0], max_model_len)
    state = ServerState(AsyncEngine(engine, metrics), names, chat_template, model_path, metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        await state.engine.start()
        try:
            yield
        finally:
            await state.engine.stop()

    app = FastAPI(title="gaudi-aot OpenAI-compatible server", version=_version(), lifespan=lifespan)
    app.state.server = state
    install_error_handlers(app)

    @app.exception_handler(EngineDeadError)
    async def _engine_dead(_: Request, exc: EngineDeadError) -> JSONResponse:
        return error_response(str(exc), HTTPStatus.SERVICE_UNAVAILABLE)

    if api_key is not None:
        app.add_middleware(ApiKeyMiddleware, api_key=api_key)

    @app.get("/health")
    async def health() -> Response:
        if not state.engine.is_alive:
            return error_response("The engine loop is not running.", HTTPStatus.SERVICE_UNAVAILABLE)
        return Response(status_code=200)

    @app.get("/version")
    async def version() -> JSONResponse:
        return JSONResponse({"version": _version()})

    @app.get("/metrics")
    async def get_metrics() -> Response:
        return PlainTextResponse(metrics.render(state.engine.stats), headers={"Content-Type": CONTENT_TYPE})

    @app.get("/v1/models")
    async def list_models() -> JSONResponse:
        data = [{"id": name, "object": "model", "created": state.started, "owned_by": "gaudi-aot",
                 "root": model_path or names[0], "parent": None, "max_model_len": max_model_len,
                 "permission": []} for name in names]
        return JSONResponse({"object": "list", "data": data})

    @app.post("/v1/completions")
    async def completions(request: CompletionRequest, raw_request: Request) -> Response:
        _log_ignored(request)
        return await create_completion(state, request, raw_request)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: ChatCompletionRequest, raw_request: Request) -> Response:
        _log_ignored(request)
        return await create_chat_completion(state, request, raw_request)

    @app.post("/tokenize")
    async def tokenize(request: TokenizeRequest) -> JSONResponse:
        check_model(request.model, names)
        tokenizer = state.tokenizer
        if request.prompt is not None:
            add_special = True if request.add_special_tokens is None else request.add_special_tokens
            token_ids = tokenizer.encode(request.prompt, add_special_tokens=add_special)
        else:
            add_special = bool(request.add_special_tokens)
            token_ids = chat_prompt(request.messages, tokenizer, chat_template,
                                    request.add_generation_prompt, add_special).token_ids
        strs = [tokenizer.decode([t], skip_special_tokens=False) for t in token_ids] \
            if request.return_token_strs else None
        return JSONResponse({"count": len(token_ids), "max_model_len": max_model_len,
                             "tokens": token_ids, "token_strs": strs})

    @app.post("/detokenize")
    async def detokenize(request: DetokenizeRequest) -> JSONResponse:
        check_model(request.model, names)
        check_token_ids(request.tokens, state.tokenizer.vocab_size, "tokens")
        return JSONResponse({"prompt": state.tokenizer.decode(request.tokens)})

    return app


def _log_ignored(request) -> None:
    ignored = request.ignored_fields()
    if ignored:
        logger.warning("The following fields were present in the request but ignored: %s", ignored)
