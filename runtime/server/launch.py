"""Start the server: load the engine, build the app, run uvicorn until SIGTERM or SIGINT.

On SIGTERM uvicorn stops accepting connections and lets in-flight requests finish for up to
`shutdown_timeout_s`; then the app's lifespan aborts whatever is still running, and the
process exits 0.
"""
from __future__ import annotations

import logging
import signal
import sys

from runtime.config import EngineOptions
from runtime.server.config import ServerConfig, load_chat_template

logger = logging.getLogger("runtime.server")


def build_server(config: ServerConfig, engine_options: EngineOptions):
    """Load the model and return a ready (not yet running) uvicorn.Server."""
    import uvicorn

    import runtime
    from runtime.server.app import create_app

    chat_template = load_chat_template(config.chat_template)
    engine = runtime.load(config.model, engine_options)
    app = create_app(engine, served_model_name=config.served_names, api_key=config.api_key,
                     chat_template=chat_template, model_path=config.model)
    uv_config = uvicorn.Config(app, host=config.host, port=config.port, log_level=config.uvicorn_log_level,
                               timeout_graceful_shutdown=config.shutdown_timeout_s, timeout_keep_alive=5)
    return uvicorn.Server(uv_config)


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
