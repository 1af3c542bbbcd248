"""The serve flags, declared once with vLLM's names, for both `python -m
runtime.entrypoints.openai.api_server` (argparse) and `gaudi-run serve` (click).

Three kinds of flags:
- ours, which map onto ServerConfig or EngineOptions fields;
- vLLM's flags that only have one meaningful value here (parallel sizes of 1, kv-cache dtype
  "auto"): accepted with that value, rejected with a sentence otherwise;
- vLLM's tuning flags that have no effect on this runtime (--enforce-eager, --swap-space...):
  accepted, so that vLLM command lines keep working, and logged.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from runtime.config import EngineOptions
from runtime.server.config import UVICORN_LOG_LEVELS, ServerConfig

logger = logging.getLogger("runtime.server")

DTYPES = {"auto": "auto", "float32": "float32", "float": "float32", "bfloat16": "bfloat16",
          "float16": "float16", "half": "float16"}


@dataclass(frozen=True)
class Flag:
    names: tuple[str, ...]   # e.g. ("--tensor-parallel-size", "-tp")
    dest: str
    help: str
    type: type | None = str  # None: a switch that takes no value
    default: Any = None
    choices: tuple[str, ...] | None = None
    multiple: bool = False   # several values (argparse nargs="+", click repeated flag)
    negatable: bool = False  # --flag / --no-flag


FLAGS: tuple[Flag, ...] = (
    Flag(("--host",), "host", "Address to listen on.", default="0.0.0.0"),
    Flag(("--port",), "port", "Port to listen on (0 picks a free one).", int, 8000),
    Flag(("--api-key",), "api_key", "Require 'Authorization: Bearer <key>' on /v1 routes."),
    Flag(("--served-model-name",), "served_model_name",
         "Model name(s) clients use in requests; the first is reported. Default: the model path.",
         multiple=True),
    Flag(("--chat-template",), "chat_template", "Jinja chat template, or a file holding one."),
    Flag(("--uvicorn-log-level",), "uvicorn_log_level", "uvicorn's log level.", default="info",
         choices=UVICORN_LOG_LEVELS),
    Flag(("--shutdown-timeout",), "shutdown_timeout", "Seconds in-flight requests may run after "
         "SIGTERM before they are aborted.", float, 30.0),
    Flag(("--max-model-len",), "max_model_len", "Longest prompt + completion, in tokens.", int),
    Flag(("--max-num-seqs",), "max_num_seqs", "Most sequences in one batch.", int, 256),
    Flag(("--max-num-batched-tokens",), "max_num_batched_tokens", "Most tokens in one step.", int),
    Flag(("--block-size",), "block_size", "Tokens per KV-cache block.", int, 16),
    Flag(("--dtype",), "dtype", "Weights dtype for checkpoints (an artifact carries its own).",
         default="auto", choices=tuple(DTYPES)),
    Flag(("--seed",), "seed", "Seed of the engine's shared random generator.", int, 0),
    Flag(("--enable-prefix-caching",), "enable_prefix_caching", "Reuse KV blocks of shared prefixes.",
         None, True, negatable=True),
    Flag(("--num-gpu-blocks-override",), "num_gpu_blocks_override", "KV-cache blocks to allocate.", int),
    Flag(("--kv-cache-memory-bytes",), "kv_cache_memory_bytes", "KV-cache size in bytes.", int),
    # vLLM flags with one meaningful value here
    Flag(("--tensor-parallel-size", "-tp"), "tensor_parallel_size", "Only 1 is supported.", int, 1),
    Flag(("--pipeline-parallel-size", "-pp"), "pipeline_parallel_size", "Only 1 is supported.", int, 1),
    Flag(("--data-parallel-size", "-dp"), "data_parallel_size", "Only 1 is supported.", int, 1),
    Flag(("--kv-cache-dtype",), "kv_cache_dtype", "Only 'auto' (the artifact's dtype).", default="auto"),
    Flag(("--quantization", "-q"), "quantization", "Fixed when the artifact is built; not accepted here."),
    Flag(("--tokenizer",), "tokenizer", "Must be the model directory (its tokenizer is used)."),
    # vLLM tuning flags without effect on this runtime
    Flag(("--gpu-memory-utilization",), "gpu_memory_utilization",
         "Accepted for vLLM compatibility; size the KV cache with --kv-cache-memory-bytes.", float),
    Flag(("--swap-space",), "swap_space", "Accepted for vLLM compatibility; no effect.", float),
    Flag(("--trust-remote-code",), "trust_remote_code", "Accepted; no remote code is ever run.", None, False),
    Flag(("--enforce-eager",), "enforce_eager", "Run a checkpoint directory's model eagerly instead of building "
         "graphs for it (an artifact always runs its graphs).", None, False),
    Flag(("--disable-log-requests",), "disable_log_requests", "Accepted; requests are not logged.",
         None, False),
    Flag(("--enable-log-requests",), "enable_log_requests", "Accepted for vLLM compatibility.", None, False),
    Flag(("--disable-log-stats",), "disable_log_stats", "Accepted for vLLM compatibility.", None, False),
)

_NO_EFFECT = ("gpu_memory_utilization", "swap_space", "enable_log_requests")


def configs_from_flags(model: str, values: dict[str, Any]) -> tuple[ServerConfig, EngineOptions]:
    """Check the flag values and build the two configs; raises ValueError naming the flag to fix."""
    for dest in ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size"):
        if values.get(dest, 1) != 1:
            flag = "--" + dest.replace("_", "-")
            raise ValueError(f"{flag} {values[dest]} is not supported: this runtime serves a model on one "
                             f"device; use {flag} 1 and start one server per device.")
    if values.get("kv_cache_dtype", "auto") != "auto":
        raise ValueError(f"--kv-cache-dtype {values['kv_cache_dtype']} is not supported: the KV cache uses "
                         "the artifact's dtype; leave --kv-cache-dtype out.")
    if values.get("quantization"):
        raise ValueError(f"--quantization {values['quantization']} is not accepted at serve time: "
                         "quantization is fixed when the artifact is built (gaudi-compile build --quant fp8).")
    if values.get("tokenizer") not in (None, model):
        raise ValueError("--tokenizer must be the model directory: the runtime uses the tokenizer "
                         "stored with the model; leave --tokenizer out.")
    utilization = values.get("gpu_memory_utilization")
    if utilization is not None and not 0.0 < utilization <= 1.0:
        raise ValueError(f"--gpu-memory-utilization must be in (0, 1], got {utilization}.")
    for dest in _NO_EFFECT:
        if values.get(dest):
            logger.info("--%s has no effect on this runtime; ignored.", dest.replace("_", "-"))
    server = ServerConfig(
        model=model, host=values.get("host") or "0.0.0.0", port=values.get("port", 8000),
        api_key=values.get("api_key"), served_model_name=tuple(values.get("served_model_name") or ()),
        chat_template=values.get("chat_template"),
        uvicorn_log_level=values.get("uvicorn_log_level") or "info",
        shutdown_timeout_s=values.get("shutdown_timeout", 30.0),
    )
    engine_kwargs = dict(
        dtype=DTYPES[values.get("dtype") or "auto"], max_model_len=values.get("max_model_len"),
        max_num_seqs=values.get("max_num_seqs", 256), max_num_batched_tokens=values.get("max_num_batched_tokens"),
        block_size=values.get("block_size", 16), num_kv_blocks=values.get("num_gpu_blocks_override"),
        seed=values.get("seed", 0), enable_prefix_caching=values.get("enable_prefix_caching", True),
        enforce_eager=bool(values.get("enforce_eager")),
    )
    if values.get("kv_cache_memory_bytes") is not None:
        engine_kwargs["kv_cache_memory_bytes"] = values["kv_cache_memory_bytes"]
    return server, _engine_options(engine_kwargs)


def _engine_options(kwargs: dict[str, Any]) -> EngineOptions:
    """EngineOptions, with its field names in error messages turned into flag names."""
    try:
        return EngineOptions(**kwargs)
    except ValueError as exc:
        message = str(exc)
        for name in kwargs:
            if message.startswith(name):
                flag = "--num-gpu-blocks-override" if name == "num_kv_blocks" else "--" + name.replace("_", "-")
                message = flag + message[len(name):]
        raise ValueError(message) from None
