"""Start the server: load the engine, build the app, run uvicorn until SIGTERM or SIGINT.

On SIGTERM uvicorn stops accepting connections and lets in-flight requests finish for up to
`shutdown_timeout_s`; then whatever is still running is aborted (a stream ends with an error
event and `data: [DONE]`), the engine loop stops, and the process exits 0.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import sys

import uvicorn

from runtime.config import EngineOptions
from runtime.server.async_engine import AsyncEngine
from runtime.server.config import ServerConfig, load_chat_template

logger = logging.getLogger("runtime.server")


class GracefulServer(uvicorn.Server):
    """uvicorn.Server whose graceful shutdown ends in-flight requests itself once the timeout
    passes, so that streams close with an error event and `data: [DONE]` instead of being cut."""

    def __init__(self, config: uvicorn.Config, engine: AsyncEngine, shutdown_timeout_s: float) -> None:
        super().__init__(config)
        self.engine = engine
        self.shutdown_timeout_s = shutdown_timeout_s

    async def shutdown(self, sockets=None) -> None:
        watchdog = asyncio.create_task(self._abort_after(self.shutdown_timeout_s))
        try:
            await super().shutdown(sockets)
        finally:
            watchdog.cancel()

    async def _abort_after(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        logger.warning("Shutdown timeout of %.1fs passed; aborting the requests still running.", delay_s)
        await self.engine.stop()


def build_server(config: ServerConfig, engine_options: EngineOptions) -> GracefulServer:
    """Load the model and return a ready (not yet running) server."""
    import runtime
    from runtime.server.app import create_app

    chat_template = load_chat_template(config.chat_template)
    engine = runtime.load(config.model, engine_options)
    app = create_app(engine, served_model_name=config.served_names, api_key=config.api_key,
                     chat_template=chat_template, model_path=config.model)
    # uvicorn's own timeout is only a backstop: the watchdog above ends requests first
    uv_config = uvicorn.Config(app, host=config.host, port=config.port, log_level=config.uvicorn_log_level,
                               timeout_graceful_shutdown=config.shutdown_timeout_s + 5, timeout_keep_alive=5)
    return GracefulServer(uv_config, app.state.server.engine, config.shutdown_timeout_s)


def serve(config: ServerConfig, engine_options: EngineOptions) -> None:
    """Serve until SIGTERM/SIGINT; returns after a graceful shutdown."""
    logging.basicConfig(level=logging.INFO if config.uvicorn_log_level in ("info", "debug", "trace")
                        else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(asctime)s [%(name)s] %(message)s", datefmt="%m-%d %H:%M:%S")
    server = build_server(config, engine_options)
    logger.info("Serving %s as %s on http://%s:%d", config.model, ", ".join(config.served_names),
                config.host, config.port)
    # uvicorn re-raises the signal that stopped it once it has shut down gracefully; with the
    # default handlers that would kill the process with 128 + signal. A finished graceful
    # shutdown is a clean exit, so the re-raised signal is made a no-op.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    server.run()
    if not server.started:  # e.g. the port was taken; uvicorn has logged why
        sys.exit(1)
