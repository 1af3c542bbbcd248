"""AsyncEngine: one engine loop serving every HTTP request at once.

The synchronous engine is not thread-safe, so exactly one thread touches it: the engine loop.
Handlers on the asyncio event loop never call the engine; they post adds and aborts to the loop
thread, which applies them between two `engine.step()` calls, then steps while any request is
unfinished. Every RequestOutput goes to its request's asyncio queue, so all concurrent requests
are batched continuously by the engine, and a slow client only slows its own queue.

    handler --add/abort--> [pending, under a lock] --loop thread--> engine.add_request/abort_request
                                                                     engine.step()
    handler <--RequestStream (asyncio.Queue)-- call_soon_threadsafe <-- outputs
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from runtime.outputs import RequestOutput
from runtime.sampling_params import SamplingParams
from runtime.server.metrics import ServerMetrics

logger = logging.getLogger("runtime.server")


class EngineDeadError(RuntimeError):
    """The engine loop failed; in-flight and later requests cannot be served."""


class RequestStream:
    """The outputs of one request, in order, as an async iterator; the last one is finished."""

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.finished = False
        self._queue: asyncio.Queue[RequestOutput | BaseException] = asyncio.Queue()

    def put(self, item: RequestOutput | BaseException) -> None:
        self._queue.put_nowait(item)

    def __aiter__(self) -> AsyncIterator[RequestOutput]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[RequestOutput]:
        while not self.finished:
            item = await self._queue.get()
            # Several outputs may be queued while the client was slow: only the newest matters
            # (they are cumulative), unless one of them is an error.
            while not isinstance(item, BaseException) and not item.finished and not self._queue.empty():
                item = self._queue.get_nowait()
            if isinstance(item, BaseException):
                self.finished = True
                raise item
            self.finished = item.finished
            yield item

    async def final(self) -> RequestOutput:
        """Wait for the request to finish and return its last output."""
        last = None
        async for output in self:
            last = output
        assert last is not None
        return last


@dataclass
class _PendingAdd:
    stream: RequestStream
    prompt: str | None
    prompt_token_ids: list[int] | None
    params: SamplingParams
    arrival_time: float
    accepted: asyncio.Future


class AsyncEngine:
    """Runs a synchronous engine (the runtime's engine contract) on its own thread."""

    def __init__(self, engine, metrics: ServerMetrics | None = None) -> None:
        self.engine = engine
        self.metrics = metrics
        self._cond = threading.Condition()
        self._pending_adds: list[_PendingAdd] = []
        self._pending_aborts: list[str] = []
        self._streams: dict[str, RequestStream] = {}  # owned by the loop thread
        self._stopping = False
        self._dead: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.stats = None  # the engine's last EngineStats, refreshed by the loop thread

    # ---- lifecycle (event loop side) -------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._refresh_stats()
        self._thread = threading.Thread(target=self._run, name="engine-loop", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Abort everything in flight and stop the loop thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)

    @property
    def is_alive(self) -> bool:
        return self._dead is None and self._thread is not None and self._thread.is_alive()

    # ---- requests (event loop side) --------------------------------------------------------
    async def add_request(self, request_id: str, prompt: str | None, prompt_token_ids: list[int] | None,
                          params: SamplingParams) -> RequestStream:
        """Queue a request; returns its stream once the engine accepted it.

        Raises ValueError with the engine's message when the engine rejects the request.
        """
        if self._dead is not None:
            raise EngineDeadError(f"The engine stopped after an error: {self._dead}")
        if self._stopping:
            raise EngineDeadError("The server is shutting down.")
        stream = RequestStream(request_id)
        accepted = asyncio.get_running_loop().create_future()
        with self._cond:
            self._pending_adds.append(_PendingAdd(stream, prompt, prompt_token_ids, params,
                                                  time.time(), accepted))
            self._cond.notify()
        try:
            await accepted
        except asyncio.CancelledError:
            self.abort(request_id)
            raise
        return stream

    def abort(self, request_id: str) -> None:
        """Abort a request (idempotent; a finished or unknown id is ignored). Thread-safe."""
        with self._cond:
            self._pending_aborts.append(request_id)
            self._cond.notify()

    # ---- the loop thread -------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not (self._stopping or self._pending_adds or self._pending_aborts
                               or self._streams):
                        self._cond.wait()
                    adds, self._pending_adds = self._pending_adds, []
                    aborts, self._pending_aborts = self._pending_aborts, []
                    stopping = self._stopping
                if stopping:
                    self._reject(adds, EngineDeadError("The server is shutting down."))
                    self._abort_all()
                    return
                self._apply_adds(adds)
                self._apply_aborts(aborts)
                if self.engine.has_unfinished_requests():
                    self._deliver(self.engine.step())
                elif self._streams:  # e.g. requests the engine finished without a final output
                    self._fail_streams(EngineDeadError("The engine dropped the request."))
                self._refresh_stats()
        except BaseException as exc:  # our bug or the engine's: fail loudly, keep the server answering
            logger.exception("The engine loop failed; in-flight requests are aborted.")
            self._dead = exc
            with self._cond:
                adds, self._pending_adds = self._pending_adds, []
            self._reject(adds, EngineDeadError(f"The engine stopped after an error: {exc}"))
            self._fail_streams(EngineDeadError(f"The engine stopped after an error: {exc}"))

    def _apply_adds(self, adds: list[_PendingAdd]) -> None:
        for add in adds:
            rid = add.stream.request_id
            try:
                self.engine.add_request(rid, add.prompt, add.prompt_token_ids, add.params,
                                        arrival_time=add.arrival_time)
            except ValueError as exc:
                self._call(_settle, add.accepted, ValueError(str(exc)))
                continue
            self._streams[rid] = add.stream
            if self.metrics is not None:
                self.metrics.on_request_added(rid, add.arrival_time)
            self._call(_settle, add.accepted)

    def _apply_aborts(self, aborts: list[str]) -> None:
        for rid in aborts:
            if self._streams.pop(rid, None) is None:
                continue
            self.engine.abort_request(rid)
            if self.metrics is not None:
                self.metrics.on_request_aborted(rid)

    def _deliver(self, outputs: list[RequestOutput]) -> None:
        now = time.time()
        ready = []
        for output in outputs:
            stream = self._streams.get(output.request_id)
            if stream is None:  # aborted while the step ran
                continue
            if self.metrics is not None:
                self.metrics.on_output(output, now)
            if output.finished:
                del self._streams[output.request_id]
            ready.append((stream, output))
        if ready:
            self._call(_put_all, ready)

    def _abort_all(self) -> None:
        for rid in list(self._streams):
            self.engine.abort_request(rid)
            if self.metrics is not None:
                self.metrics.on_request_aborted(rid)
        self._fail_streams(EngineDeadError("The server is shutting down."))
        self._refresh_stats()

    def _fail_streams(self, exc: BaseException) -> None:
        streams, self._streams = list(self._streams.values()), {}
        self._call(_put_all, [(stream, exc) for stream in streams])

    def _reject(self, adds: list[_PendingAdd], exc: BaseException) -> None:
        for add in adds:
            self._call(_settle, add.accepted, exc)

    def _refresh_stats(self) -> None:
        self.stats = self.engine.stats()

    def _call(self, fn, *args) -> None:
        """Run fn(*args) on the event loop (futures and queues are not thread-safe)."""
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the event loop is closed: nobody is waiting any more
            pass


def _settle(future: asyncio.Future, exc: BaseException | None = None) -> None:
    if future.done():  # the handler was cancelled meanwhile
        return
    if exc is None:
        future.set_result(None)
    else:
        future.set_exception(exc)


def _put_all(items) -> None:
    for stream, item in items:
        stream.put(item)
