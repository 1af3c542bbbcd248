"""POST /v1/chat/completions: chat messages rendered with the chat template, streamed or not.

A stream opens each choice with a delta carrying the assistant role, then sends content deltas;
each choice's last chunk carries its finish_reason. max_tokens (or max_completion_tokens)
defaults to the rest of the context, as in vLLM.
"""
from __future__ import annotations

import time
from http import HTTPStatus

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from runtime.server.async_engine import EngineDeadError, RequestStream
from runtime.server.errors import bad_request, error_body
from runtime.server.inputs import chat_prompt, check_model, resolve_max_tokens
from runtime.server.logprobs import chat_logprobs, token_namer
from runtime.server.protocol import ChatCompletionRequest
from runtime.server.serving_completion import abort_unfinished, add_requests
from runtime.server.state import ServerState, random_id
from runtime.server.streaming import DONE, STREAM_HEADERS, DeltaTracker, abort_on_disconnect, sse


async def create_chat_completion(state: ServerState, request: ChatCompletionRequest,
                                 raw_request: Request) -> Response:
    check_model(request.model, state.served_names)
    tokenizer = state.tokenizer
    prompt = chat_prompt(request.messages, tokenizer, state.chat_template,
                         request.add_generation_prompt, request.add_special_tokens)
    param = "max_completion_tokens" if request.max_completion_tokens is not None else "max_tokens"
    max_tokens = resolve_max_tokens(request.requested_max_tokens, len(prompt.token_ids),
                                    state.max_model_len, param, "messages")
    try:
        params = request.to_sampling_params(max_tokens)
        params.verify_vocab(tokenizer.vocab_size)
    except ValueError as exc:
        raise bad_request(str(exc), fields=request.model_fields) from None
    request_id = random_id("chatcmpl")
    (stream,) = await add_requests(state, request_id, [prompt], [params])
    job = _Chat(state, request, request_id, len(prompt.token_ids), params.n)
    if request.stream:
        return StreamingResponse(job.stream(stream), media_type="text/event-stream", headers=STREAM_HEADERS)
    final = await abort_on_disconnect(raw_request, stream.final(), lambda: abort_unfinished(state, [stream]))
    if final is None:
        return Response(status_code=499)  # the client is gone; nobody reads this
    return JSONResponse(job.response(final))


class _Chat:
    """Formats one chat request's outputs."""

    def __init__(self, state: ServerState, request: ChatCompletionRequest, request_id: str,
                 num_prompt_tokens: int, n: int) -> None:
        self.state, self.request, self.request_id = state, request, request_id
        self.num_prompt_tokens, self.n = num_prompt_tokens, n
        self.created = int(time.time())
        self.num_top = request.top_logprobs or 0
        self.name = token_namer(state.tokenizer, request.return_tokens_as_token_ids)

    def _logprobs(self, token_ids, steps) -> dict | None:
        if not self.request.logprobs:
            return None
        return chat_logprobs(token_ids, steps or [{}] * len(token_ids), self.num_top, self.name)

    def _usage(self, num_completion_tokens: int) -> dict:
        return {"prompt_tokens": self.num_prompt_tokens, "completion_tokens": num_completion_tokens,
                "total_tokens": self.num_prompt_tokens + num_completion_tokens}

    def response(self, final) -> dict:
        choices = [{
            "index": output.index,
            "message": {"role": "assistant", "content": output.text},
            "logprobs": self._logprobs(output.token_ids, output.logprobs),
            "finish_reason": output.finish_reason, "stop_reason": output.stop_reason,
        } for output in final.outputs]
        num_completion_tokens = sum(len(output.token_ids) for output in final.outputs)
        return {"id": self.request_id, "object": "chat.completion", "created": self.created,
                "model": self.state.model_name, "choices": choices,
                "usage": self._usage(num_completion_tokens)}

    def _chunk(self, choices: list[dict], usage: dict | None = None, tracker: DeltaTracker | None = None) -> str:
        if usage is None and tracker is not None and self.request.continuous_usage:
            usage = self._usage(sum(tracker.num_tokens.values()))
        return sse({"id": self.request_id, "object": "chat.completion.chunk", "created": self.created,
                    "model": self.state.model_name, "choices": choices, "usage": usage})

    async def stream(self, stream: RequestStream):
        tracker = DeltaTracker()
        try:
            # every choice opens with the assistant's role, before any text (OpenAI does the same)
            for index in range(self.n):
                yield self._chunk([{"index": index, "delta": {"role": "assistant", "content": ""},
                                    "logprobs": None, "finish_reason": None}])
            async for result in stream:
                for output in result.outputs:
                    delta = tracker.delta(output.index, output)
                    # one chunk per step with new tokens, even when they complete no character
                    # yet (part of a UTF-8 sequence): clients time tokens by chunks, as with vLLM
                    if delta is None or (not delta.text and not delta.token_ids and delta.finish_reason is None):
                        continue
                    yield self._chunk([{
                        "index": output.index,
                        "delta": {"content": delta.text} if delta.text or delta.finish_reason is None else {},
                        "logprobs": self._logprobs(delta.token_ids, delta.logprobs),
                        "finish_reason": delta.finish_reason, "stop_reason": delta.stop_reason,
                    }], tracker=tracker)
            if self.request.include_usage:
                yield self._chunk([], self._usage(sum(tracker.num_tokens.values())))
        except (ValueError, EngineDeadError) as exc:
            status = HTTPStatus.BAD_REQUEST if isinstance(exc, ValueError) else HTTPStatus.SERVICE_UNAVAILABLE
            yield sse(error_body(str(exc), status))
        finally:
            abort_unfinished(self.state, [stream])
        yield DONE
