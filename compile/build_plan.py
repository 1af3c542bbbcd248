"""What a build will make: options in, the bucket list and each graph's incremental-rebuild key out.

Planning reads only the checkpoint's config.json and asks the target for its fingerprint and
settings, so it is cheap: `gaudi-compile build` and the runtime's build cache use it to tell which
graphs an existing artifact already has.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from compile.models.attention import get_backend as get_attention_backend
from compile.models.config import ModelConfig
from compile.quantize import QuantConfig
from compile.targets import Target, get_target
from compile.trace import code_version
from runtime.artifact import sha256_file
from runtime.buckets import Bucket, BucketSpec, make_buckets

GRAPHS_DIR = "graphs"
# defaults sized so a ~30M-parameter model builds in a few minutes on 2 cores: few graphs (default_buckets)
DEFAULT_MAX_MODEL_LEN = 1024
DEFAULT_MAX_NUM_SEQS = 16
DEFAULT_MAX_NUM_BATCHED_TOKENS = 256


@dataclass(frozen=True)
class BuildOptions:
    """What to build. Bucket lists left empty take default_buckets, or `bucket_strategy` spacing if it is set."""
    model_dir: Path
    out_dir: Path | None = None                  # None: artifacts/<model dir name>-<target>-<dtype>
    target: str = "cpu"
    dtype: str = "auto"                          # auto: the checkpoint's (float32 unless it is bf16/fp32)
    max_model_len: int | None = None             # None: min(model limit, DEFAULT_MAX_MODEL_LEN)
    max_num_seqs: int = DEFAULT_MAX_NUM_SEQS     # largest decode batch
    max_num_batched_tokens: int = DEFAULT_MAX_NUM_BATCHED_TOKENS   # largest prefill batch * query_len
    block_size: int = 16
    bucket_strategy: str | None = None           # None: default_buckets; "exp" | "linear": runtime.buckets spacing
    prefill_buckets: tuple[tuple[int, int], ...] = ()   # explicit (batch, query_len) list
    decode_buckets: tuple[int, ...] = ()                # explicit decode batch list
    context_blocks: tuple[int, ...] = ()                # block-table widths besides the full one (default: 1/4)
    jobs: int = 1
    quantization: QuantConfig = field(default_factory=QuantConfig)   # FP8 weights / KV cache
    notes: dict = field(default_factory=dict, compare=False)   # copied into report.json as they are

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise ValueError(f"jobs must be at least 1, got {self.jobs}.")
        if self.bucket_strategy not in (None, "exp", "linear"):
            raise ValueError(f"bucket strategy {self.bucket_strategy!r} is unknown; use 'exp' or 'linear'.")
        for name in ("max_num_seqs", "max_num_batched_tokens", "block_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}.")
        if self.max_model_len is not None and self.max_model_len < 1:
            raise ValueError(f"max_model_len must be a positive integer, got {self.max_model_len}.")
        if any(b < 1 or q < 1 for b, q in self.prefill_buckets) or any(b < 1 for b in self.decode_buckets):
            raise ValueError("bucket sizes must be positive integers.")


@dataclass(frozen=True)
class BuildPlan:
    options: BuildOptions
    model_dir: Path
    out_dir: Path
    target: Target
    config: ModelConfig
    dtype: str                     # torch dtype name
    max_model_len: int
    config_sha256: str
    fingerprint: dict[str, str]
    buckets: list[Bucket]
    keys: dict[Bucket, str]        # bucket -> sha256 of everything its graph depends on
    files: dict[Bucket, str]       # bucket -> graph file, relative to out_dir


def default_buckets(max_model_len: int, max_num_seqs: int, max_num_batched_tokens: int
                    ) -> tuple[tuple[tuple[int, int], ...], tuple[int, ...]]:
    """The default (prefill shapes, decode batches): few graphs, each covering a wide range.

    Each graph of a 30M-parameter model costs 15-40 s to compile on 2 cores, so the default set is
    small. Prefill: one query length, 64 (or less if the limits are lower), at batch 1 and at the
    largest batch the token budget allows (4 by default); longer prompts run as consecutive 64-token
    chunks, so a prompt wastes under 64 padded tokens (30M model, 64-token prompts: q128 graphs made
    prefill 2x slower than eager, q64 graphs match their per-token cost), and a step with many
    prompts runs them 4 at a time (32 prompts: 0.42 s in 4-row launches vs 0.57 s one at a time).
    Decode: batch 1 for single-stream latency and max_num_seqs for throughput (with 16x steps
    between them for large limits). Every shape comes at two context widths, a quarter and all of
    max_model_len (bucket_spec): a graph's attention costs what its width holds, not what the
    sequence holds, so short sequences need the narrow one. 8 graphs by default (4 prefill, 4 decode):

    >>> default_buckets(1024, 16, 64)
    (((1, 64),), (1, 16))
    >>> default_buckets(1024, 16, 256)[0]
    ((1, 64), (4, 64))
    >>> default_buckets(2048, 256, 2048)[1]
    (1, 16, 256)
    """
    query_len = min(64, max_model_len, max_num_batched_tokens)
    prefill = tuple(sorted({(1, query_len), (max(1, max_num_batched_tokens // query_len), query_len)}))
    decode, batch = [], 1
    while batch < max_num_seqs:
        decode.append(batch)
        batch *= 16
    return prefill, tuple(decode + [max_num_seqs])


def bucket_spec(options: BuildOptions, max_model_len: int) -> BucketSpec:
    """Explicit bucket lists win, then `bucket_strategy` spacing, then default_buckets."""
    prefill, decode = (), ()
    widths = options.context_blocks or (max(1, max_model_len // options.block_size // 4),)
    if options.bucket_strategy is None:
        prefill, decode = default_buckets(max_model_len, options.max_num_seqs, options.max_num_batched_tokens)
    return BucketSpec(
        max_model_len=max_model_len, block_size=options.block_size, max_num_seqs=options.max_num_seqs,
        max_num_batched_tokens=options.max_num_batched_tokens, min_query_len=min(32, options.max_num_batched_tokens),
        strategy=options.bucket_strategy or "exp", prefill_shapes=options.prefill_buckets or prefill,
        decode_batches=options.decode_buckets or decode, decode_num_blocks=widths, prefill_num_blocks=widths)


def resolve_dtype(requested: str, model_dir: Path) -> str:
    from compile.models.loader import parse_dtype
    from runtime.loading import checkpoint_dtype

    return str(parse_dtype(checkpoint_dtype(model_dir, requested))).removeprefix("torch.")


def default_out_dir(model_dir: Path, target: str, dtype: str, quantization: QuantConfig = QuantConfig()) -> Path:
    return Path("artifacts") / f"{model_dir.resolve().name}-{target}-{dtype}{quantization.name_suffix}"


def plan_build(options: BuildOptions) -> BuildPlan:
    """Check the options against the checkpoint and the machine; ValueError naming the fix if they cannot build."""
    model_dir = Path(options.model_dir)
    if not model_dir.is_dir():
        raise ValueError(f"{model_dir} is not a directory; pass a Hugging Face checkpoint directory.")
    cfg = ModelConfig.from_dir(model_dir)
    target = get_target(options.target)
    target.check_available()
    dtype = resolve_dtype(options.dtype, model_dir)
    max_model_len = options.max_model_len or min(cfg.max_position_embeddings, DEFAULT_MAX_MODEL_LEN)
    if max_model_len > cfg.max_position_embeddings:
        raise ValueError(f"max_model_len {max_model_len} exceeds the model's max_position_embeddings "
                         f"({cfg.max_position_embeddings}); lower it.")
    if options.quantization.is_enabled:
        options.quantization.calibration_texts()   # a bad --calib-data fails now, before the model loads
    buckets = make_buckets(bucket_spec(options, max_model_len))
    fingerprint = target.fingerprint()
    config_sha256 = sha256_file(model_dir / "config.json")
    # the target's own modules and its attention backend's (hpu: compile/models/attention_hpu.py) shape its graphs
    target_modules = tuple(c.__module__ for c in type(target).__mro__ if c.__module__.startswith("compile."))
    version = code_version(target_modules + (get_attention_backend(target.attention_backend).__module__,))
    common = {"config_sha256": config_sha256, "dtype": dtype, "block_size": options.block_size,
              "target": target.name, "fingerprint": fingerprint, "settings": target.settings(),
              "code_version": version, "quantization": options.quantization.graph_key()}
    keys = {b: hashlib.sha256(json.dumps({**common, "bucket": asdict(b)}, sort_keys=True).encode()).hexdigest()
            for b in buckets}
    out_dir = Path(options.out_dir or default_out_dir(model_dir, target.name, dtype, options.quantization))
    return BuildPlan(options, model_dir, out_dir, target, cfg, dtype, max_model_len, config_sha256, fingerprint,
                     buckets, keys, {b: f"{GRAPHS_DIR}/{b.name}{target.graph_suffix}" for b in buckets})
