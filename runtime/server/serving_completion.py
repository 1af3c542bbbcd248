"""POST /v1/completions: legacy text completions, streamed or not.

A batch of prompts becomes one engine request per prompt (ids `cmpl-<hex>-<i>`); choice indices
are prompt_index * n + output_index, as in vLLM and OpenAI.
"""
from __future__ import annotations

import time
from http import HTTPStatus

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from runtime.server.async_engine import EngineDeadError, RequestStream
from runtime.server.errors import ServerError, bad_request, error_body
from runtime.server.inputs import EnginePrompt, check_model, completion_prompts, resolve_max_tokens
from runtime.server.logprobs import completion_logprobs, token_namer
from runtime.server.protocol import CompletionRequest
from runtime.server.state import ServerState, random_id
from runtime.server.streaming import (DONE, STREAM_HEADERS, DeltaTracker, abort_on_disconnect,
                                      merge_streams, sse)


async def add_requests(state: ServerState, request_id: str, prompts: list[EnginePrompt],
                       params_list) -> list[RequestStream]:
    """Submit one engine request per prompt; on any failure abort those already submitted."""
    streams: list[RequestStream] = []
    try:
        for i, (prompt, params) in enumerate(zip(prompts, params_list)):
            rid = request_id if len(prompts) == 1 else f"{request_id}-{i}"
            streams.append(await state.engine.add_request(rid, prompt.text, prompt.token_ids, params))
    except BaseException as exc:
        for stream in streams:
            state.engine.abort(stream.request_id)
        if isinstance(exc, ValueError):
            raise bad_request(str(exc), fields=request.model_fields) from None
        if isinstance(exc, EngineDeadError):
            raise ServerError(str(exc), HTTPStatus.SERVICE_UNAVAILABLE) from None
        raise
    return streams


def abort_unfinished(state: ServerState, streams: list[RequestStream]) -> None:
    for stream in streams:
        if not stream.finished:
            state.engine.abort(stream.request_id)


async def create_completion(state: ServerState, request: CompletionRequest, raw_request: Request) -> Response:
    check_model(request.model, state.served_names)
    if request.suffix is not None:
        raise bad_request("suffix is not supported; remove it from the request.", "suffix")
    tokenizer = state.tokenizer
    prompts = completion_prompts(request.prompt, tokenizer, request.add_special_tokens)
    params_list = []
    for prompt in prompts:
        max_tokens = resolve_max_tokens(request.max_tokens, len(prompt.token_ids), state.max_model_len)
        try:
            params = request.to_sampling_params(max_tokens)
            params.verify_vocab(tokenizer.vocab_size)
        except ValueError as exc:
            raise bad_request(str(exc), fields=request.model_fields) from None
        params_list.append(params)
    request_id = random_id("cmpl")
    streams = await add_requests(state, request_id, prompts, params_list)
    job = _Completion(state, request, request_id, prompts, params_list[0].n)
    if request.stream:
        return StreamingResponse(job.stream(streams), media_type="text/event-stream", headers=STREAM_HEADERS)
    finals = await abort_on_disconnect(raw_request, _gather(streams), lambda: abort_unfinished(state, streams))
    if finals is None:
        return Response(status_code=499)  # the client is gone; nobody reads this
    return JSONResponse(job.response(finals))


async def _gather(streams: list[RequestStream]):
    finals = [None] * len(streams)
    async for i, output in merge_streams(streams):
        finals[i] = output
    return finals


class _Completion:
    """Formats one completions request's outputs."""

    def __init__(self, state: ServerState, request: CompletionRequest, request_id: str,
                 prompts: list[EnginePrompt], n: int) -> None:
        self.state, self.request, self.request_id = state, request, request_id
        self.prompts, self.n = prompts, n
        self.created = int(time.time())
        self.name = token_namer(state.tokenizer, request.return_tokens_as_token_ids)

    def _prompt_text(self, i: int) -> str:
        prompt = self.prompts[i]
        if prompt.text is not None:
            return prompt.text
        return self.state.tokenizer.decode(prompt.token_ids)

    def _logprobs(self, i: int, token_ids, steps, offset: int, with_prompt, prompt_steps) -> dict | None:
        """Completions-format logprobs; with_prompt prepends the prompt tokens (echo)."""
        if self.request.logprobs is None:
            return None
        ids, all_steps = list(token_ids), list(steps or [None] * len(token_ids))
        if with_prompt:
            prompt_ids = self.prompts[i].token_ids
            ids = prompt_ids + ids
            all_steps = list(prompt_steps or [None] * len(prompt_ids)) + all_steps
        return completion_logprobs(ids, all_steps, self.request.logprobs, self.name, offset)

    def _usage(self, num_completion_tokens: int) -> dict:
        num_prompt_tokens = sum(len(p.token_ids) for p in self.prompts)
        return {"prompt_tokens": num_prompt_tokens, "completion_tokens": num_completion_tokens,
                "total_tokens": num_prompt_tokens + num_completion_tokens}

    def response(self, finals) -> dict:
        choices, num_completion_tokens = [], 0
        for i, final in enumerate(finals):
            for output in final.outputs:
                text = output.text
                if self.request.echo:
                    text = self._prompt_text(i) + text
                choices.append({
                    "index": i * self.n + output.index, "text": text,
                    "logprobs": self._logprobs(i, output.token_ids, output.logprobs, 0, self.request.echo,
                                               final.prompt_logprobs),
                    "finish_reason": output.finish_reason, "stop_reason": output.stop_reason,
                })
                num_completion_tokens += len(output.token_ids)
        choices.sort(key=lambda c: c["index"])
        return {"id": self.request_id, "object": "text_completion", "created": self.created,
                "model": self.state.model_name, "choices": choices,
                "usage": self._usage(num_completion_tokens)}

    def _chunk(self, choices: list[dict], usage: dict | None = None, tracker: DeltaTracker | None = None) -> str:
        if usage is None and tracker is not None and self.request.continuous_usage:
            usage = self._usage(sum(tracker.num_tokens.values()))
        return sse({"id": self.request_id, "object": "text_completion", "created": self.created,
                    "model": self.state.model_name, "choices": choices, "usage": usage})

    async def stream(self, streams: list[RequestStream]):
        tracker = DeltaTracker()
        echo_len: dict[tuple[int, int], int] = {}
        try:
            async for i, result in merge_streams(streams):
                for output in result.outputs:
                    key = (i, output.index)
                    delta = tracker.delta(key, output)
                    if delta is None:
                        continue
                    text, with_prompt = delta.text, self.request.echo and delta.is_first
                    if with_prompt:
                        echo_len[key] = len(prompt_text := self._prompt_text(i))
                        text = prompt_text + text
                    offset = 0 if with_prompt else echo_len.get(key, 0) + delta.text_offset
                    yield self._chunk([{
                        "index": i * self.n + output.index, "text": text,
                        "logprobs": self._logprobs(i, delta.token_ids, delta.logprobs, offset, with_prompt,
                                                   result.prompt_logprobs),
                        "finish_reason": delta.finish_reason, "stop_reason": delta.stop_reason,
                    }], tracker=tracker)
            if self.request.include_usage:
                yield self._chunk([], self._usage(sum(tracker.num_tokens.values())))
        except (ValueError, EngineDeadError) as exc:
            status = HTTPStatus.BAD_REQUEST if isinstance(exc, ValueError) else HTTPStatus.SERVICE_UNAVAILABLE
            yield sse(error_body(str(exc), status))
        finally:
            abort_unfinished(self.state, streams)
        yield DONE
