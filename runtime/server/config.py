"""ServerConfig: where and how the HTTP server listens, validated before anything loads."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

UVICORN_LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


@dataclass(frozen=True)
class ServerConfig:
    """model: artifact or checkpoint directory to serve.
    host, port: where to listen (port 0 picks a free one).
    api_key: when set, /v1 routes require `Authorization: Bearer <api_key>`.
    served_model_name: names clients may use in `model`; empty means the model path.
    chat_template: a Jinja template, or a file holding one; None uses the tokenizer's.
    uvicorn_log_level: uvicorn's log level.
    shutdown_timeout_s: on SIGTERM, how long in-flight requests may run before they are aborted.
    """

    model: str
    host: str = "0.0.0.0"
    port: int = 8000
    api_key: str | None = None
    served_model_name: tuple[str, ...] = ()
    chat_template: str | None = None
    uvicorn_log_level: str = "info"
    shutdown_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("--model is required: pass an artifact directory or a checkpoint directory.")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"--port must be in [0, 65535], got {self.port}.")
        if self.uvicorn_log_level not in UVICORN_LOG_LEVELS:
            raise ValueError(f"--uvicorn-log-level must be one of {', '.join(UVICORN_LOG_LEVELS)}, "
                             f"got {self.uvicorn_log_level!r}.")
        if any(not name for name in self.served_model_name):
            raise ValueError("--served-model-name must not be empty; give one or more names.")
        if self.api_key is not None and not self.api_key:
            raise ValueError("--api-key must not be empty; leave it out to serve without a key.")
        if self.shutdown_timeout_s < 0:
            raise ValueError(f"--shutdown-timeout must be >= 0 seconds, got {self.shutdown_timeout_s}.")

    @property
    def served_names(self) -> list[str]:
        return list(self.served_model_name) or [self.model]


def load_chat_template(value: str | None) -> str | None:
    """The template text for --chat-template: a file's contents, or the value itself.

    Like vLLM: a value without Jinja markup that names no readable file is an error, since it is
    almost certainly a mistyped path.
    """
    if value is None:
        return None
    path = Path(value)
    try:
        if path.is_file():
            return path.read_text(encoding="utf-8")
    except OSError:  # e.g. a template long enough to be an invalid file name
        pass
    if any(c in value for c in "{}\n"):
        return value
    raise ValueError(f"--chat-template {value!r} looks like a file path, but the file could not be "
                     "opened; pass a readable Jinja template file or the template text itself.")
