"""The OpenAI-compatible HTTP server: `create_app(engine, ...)` builds it around any engine."""
from runtime.server.app import create_app

__all__ = ["create_app"]
