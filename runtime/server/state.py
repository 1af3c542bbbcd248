"""ServerState: what every handler needs, built once by `create_app`."""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

from runtime.server.async_engine import AsyncEngine
from runtime.server.metrics import ServerMetrics


@dataclass
class ServerState:
    """The running engine and the server's settings.

    served_names: model names clients may ask for; the first is reported in responses.
    chat_template: a Jinja template overriding the tokenizer's, or None.
    model_path: where the model was loaded from (reported as `root` by /v1/models).
    """

    engine: AsyncEngine
    served_names: list[str]
    chat_template: str | None
    model_path: str | None
    metrics: ServerMetrics
    started: int = field(default_factory=lambda: int(time.time()))

    @property
    def model_name(self) -> str:
        return self.served_names[0]

    @property
    def tokenizer(self):
        return self.engine.engine.tokenizer

    @property
    def max_model_len(self) -> int:
        return engine_max_model_len(self.engine.engine)


def engine_max_model_len(engine) -> int:
    """The longest prompt + completion the engine serves (`model_config.max_model_len` in vLLM)."""
    model_config = getattr(engine, "model_config", None)
    if model_config is not None:
        return int(model_config.max_model_len)
    return int(engine.max_model_len)


def random_id(prefix: str) -> str:
    """A response id like OpenAI's: prefix + 32 hex characters."""
    return f"{prefix}-{secrets.token_hex(16)}"
