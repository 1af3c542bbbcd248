"""Server-sent events and the plumbing shared by streaming and non-streaming handlers.

A stream is `data: <json>\n\n` events ending with `data: [DONE]\n\n`, as OpenAI sends them.
A client that goes away aborts its requests at once, so their KV blocks are freed for others.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from fastapi import Request

from runtime.outputs import RequestOutput
from runtime.server.async_engine import RequestStream

DONE = "data: [DONE]\n\n"
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

T = TypeVar("T")


def sse(payload: dict) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n"


async def merge_streams(streams: list[RequestStream]) -> AsyncIterator[tuple[int, RequestOutput]]:
    """Outputs of several requests as they come, tagged with the request's position in `streams`."""
    if len(streams) == 1:
        async for output in streams[0]:
            yield 0, output
        return
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(i: int, stream: RequestStream) -> None:
        try:
            async for output in stream:
                await queue.put((i, output))
        except BaseException as exc:  # hand the error to the consumer
            await queue.put((i, exc))
        finally:
            await queue.put((i, None))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        remaining = len(streams)
        while remaining:
            i, item = await queue.get()
            if item is None:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield i, item
    finally:
        for task in tasks:
            task.cancel()


async def abort_on_disconnect(raw_request: Request, work: Awaitable[T],
                              on_disconnect: Callable[[], None]) -> T | None:
    """Await `work`; if the client disconnects first, cancel it, call on_disconnect, return None."""
    task = asyncio.ensure_future(work)

    async def disconnected() -> None:
        while True:
            message = await raw_request.receive()
            if message["type"] == "http.disconnect":
                return

    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        left = not task.done()  # the client left, or this handler itself was cancelled
        if left:
            task.cancel()
            on_disconnect()
    return None if left else task.result()


class Delta:
    """What one output added since the last chunk sent for it."""

    __slots__ = ("is_first", "text", "text_offset", "token_ids", "logprobs", "finish_reason", "stop_reason")

    def __init__(self, is_first, text, text_offset, token_ids, logprobs, finish_reason, stop_reason):
        self.is_first = is_first
        self.text = text                # new text
        self.text_offset = text_offset  # length of the text sent before this delta
        self.token_ids = token_ids      # new token ids
        self.logprobs = logprobs        # their logprob steps, or None when not requested
        self.finish_reason = finish_reason
        self.stop_reason = stop_reason


class DeltaTracker:
    """Turns cumulative CompletionOutputs into deltas, one choice (key) at a time.

    Outputs are cumulative and their text only grows, so a delta is the suffix not sent yet.
    A choice that finished is never reported again.
    """

    def __init__(self) -> None:
        self._sent: dict[object, tuple[int, int]] = {}  # key -> (chars sent, tokens sent)
        self._finished: set = set()
        self.num_tokens: dict[object, int] = {}  # key -> tokens generated so far

    def delta(self, key, output) -> Delta | None:
        if key in self._finished:
            return None
        is_first = key not in self._sent
        num_chars, num_tokens = self._sent.get(key, (0, 0))
        text = output.text[num_chars:]
        token_ids = output.token_ids[num_tokens:]
        if not is_first and not text and not token_ids and output.finish_reason is None:
            return None
        logprobs = output.logprobs[num_tokens:len(output.token_ids)] if output.logprobs is not None else None
        self._sent[key] = (len(output.text), len(output.token_ids))
        self.num_tokens[key] = len(output.token_ids)
        if output.finish_reason is not None:
            self._finished.add(key)
        return Delta(is_first, text, num_chars, token_ids, logprobs, output.finish_reason, output.stop_reason)

    def is_finished(self, key) -> bool:
        return key in self._finished
