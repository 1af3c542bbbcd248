"""Load a built artifact into an LLMEngine: validate, map the weights, run graphs per bucket.

Order of checks, each a one-sentence ValueError naming the fix: the manifest (runtime/artifact.py),
the fingerprint against this machine (runtime/graphs/<target>), the files and their checksums.
Only then is anything mapped or loaded. Graphs load lazily, on a bucket's first launch, and are
bound to the one memory-mapped weights file without copying it. Every launch's inputs are checked
against the bucket's shapes and dtypes first: a compiled graph does not check them, and a wrong
shape would crash the process instead of raising.
"""
from __future__ import annotations

import dataclasses
import logging
import time
import weakref
from pathlib import Path

import torch

from runtime.artifact import Manifest, check_files, read_manifest
from runtime.buckets import Bucket, plan_launches
from runtime.config import EngineOptions
from runtime.engine import LLMEngine, ModelInfo
from runtime.graphs import GRAPH_INPUTS, Graph, GraphBackend, get_backend
from runtime.model_inputs import ModelInputs, StepRow
from runtime.runner import Launch, LaunchStats
from runtime.tokenizer import Tokenizer

logger = logging.getLogger(__name__)


class CompiledExecutor:
    """runner.Executor over an artifact's per-bucket graphs; the LM head runs outside the graphs."""

    def __init__(self, root: Path, manifest: Manifest, backend: GraphBackend, weights: dict[str, torch.Tensor]):
        self.root, self.manifest, self.backend, self.weights = root, manifest, backend, weights
        self.block_size = manifest.kv_cache.block_size
        self.buckets = [e.bucket for e in manifest.buckets]
        self._entries = {e.bucket.name: e for e in manifest.buckets}
        self._graphs: dict[str, Graph] = {}
        self.kv_dtype = getattr(torch, manifest.kv_cache.dtype)
        self.lm_head = backend.to_device(manifest.weights.lm_head, weights[manifest.weights.lm_head])  # [V, H]
        if tuple(self.lm_head.shape) != (manifest.model.vocab_size, manifest.model.hidden_size):
            raise ValueError(f"the LM head in {root} has shape {tuple(self.lm_head.shape)}, not the manifest's "
                             f"[{manifest.model.vocab_size}, {manifest.model.hidden_size}]; rebuild the artifact.")

    def plan(self, rows: list[StepRow], is_prefill: bool) -> list[Launch]:
        return plan_launches(self.buckets, rows, is_prefill, self.block_size)

    def forward(self, inputs: ModelInputs, launch: Launch, kv_cache: torch.Tensor) -> torch.Tensor:
        device = self.backend.device
        md = inputs.md
        args = [inputs.input_ids.to(device), inputs.positions.to(device), kv_cache, md.slot_mapping.to(device),
                md.block_tables.to(device), md.seq_lens.to(device)]
        self._check_inputs(self._entries[launch.name].bucket, args)
        return self.graph(launch.name).run(args)[0]                          # [B, Q, hidden]

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """[N, hidden] -> [N, vocab] float32 on the CPU, as the eager model's lm_head computes them."""
        return torch.nn.functional.linear(hidden, self.lm_head).float().cpu()

    def graph(self, name: str) -> Graph:
        """The bucket's graph, loaded and bound to the weights on first use."""
        graph = self._graphs.get(name)
        if graph is None:
            start = time.perf_counter()
            entry = self._entries[name]
            graph = self.backend.load(self.root / entry.file)
            stored = self.manifest.weights
            missing = [n for n in graph.constant_fqns() if stored.stored_name(n) not in self.weights]
            if missing:
                raise ValueError(f"graph {entry.file} needs weight {missing[0]}, which {stored.file} lacks; "
                                 "rebuild the artifact.")
            graph.bind({n: self.weights[stored.stored_name(n)] for n in graph.constant_fqns()})
            self._graphs[name] = graph
            logger.info("loaded graph %s in %.1f ms", name, 1e3 * (time.perf_counter() - start))
        return graph

    def _check_inputs(self, bucket: Bucket, args: list[torch.Tensor]) -> None:
        kv = self.manifest.kv_cache
        batch, query_len, num_blocks = bucket.shape
        expected = {"input_ids": (batch, query_len), "positions": (batch, query_len),
                    "kv_cache": kv.shape(args[2].shape[2] if args[2].dim() == 6 else -1),
                    "slot_mapping": (batch, query_len), "block_tables": (batch, num_blocks), "seq_lens": (batch,)}
        for name, tensor in zip(GRAPH_INPUTS, args):
            dtype = self.kv_dtype if name == "kv_cache" else torch.int64
            if tuple(tensor.shape) != expected[name] or tensor.dtype != dtype or not tensor.is_contiguous() \
                    or tensor.device != self.backend.device:
                raise RuntimeError(f"{bucket.name} input {name} is {tensor.dtype} {tuple(tensor.shape)} on "
                                   f"{tensor.device}, but the graph takes a contiguous {dtype} {expected[name]} on "
                                   f"{self.backend.device}")
        if args[2].shape[2] < 2:
            raise RuntimeError("the KV cache needs at least 2 blocks (block 0 is the null block)")


def format_launch_stats(stats: LaunchStats) -> str:
    """One line per launch shape: runs and the share of computed tokens that were padding."""
    lines = []
    for name in sorted(stats.runs):
        total = stats.real_tokens[name] + stats.padded_tokens[name]
        lines.append(f"{name}: {stats.runs[name]} runs, {stats.real_tokens[name]} tokens, "
                     f"{100 * stats.padded_tokens[name] / max(total, 1):.0f}% padding")
    return "; ".join(lines) or "no launches"


def _log_stats(stats: LaunchStats, name: str) -> None:
    logger.info("bucket use for %s: %s", name, format_launch_stats(stats))


def load_artifact_engine(path: str | Path, options: EngineOptions) -> LLMEngine:
    """Validate and load an artifact directory; the engine logs its per-bucket counters when it is released."""
    from safetensors.torch import load_file

    from runtime.loading import scheduler_config

    start = time.perf_counter()
    root = Path(path)
    manifest = read_manifest(root)
    backend = get_backend(manifest.target)
    backend.prepare(root)
    backend.check_fingerprint(manifest.fingerprint)
    check_files(root, manifest)
    # memory-mapped: pages are read on first touch and shared with every process serving the file;
    # a device backend copies each weight to its device once (backend.to_device)
    weights = load_file(str(root / manifest.weights.file), device="cpu")
    executor = CompiledExecutor(root, manifest, backend, weights)
    kv = manifest.kv_cache
    if options.block_size != kv.block_size:
        logger.warning("block_size %d ignored: the artifact's graphs were built for %d", options.block_size,
                       kv.block_size)
    options = dataclasses.replace(options, block_size=kv.block_size,
                                  max_num_seqs=options.max_num_seqs or manifest.max_num_seqs)
    bytes_per_block = 2 * kv.num_layers * kv.block_size * kv.num_kv_heads * kv.head_dim * executor.kv_dtype.itemsize
    # a step's token budget is not one launch: plan_launches cuts a step into bucket-sized launches, and a
    # budget of one bucket would make the scheduler chunk prompts across steps at offsets that pad two launches
    sched = scheduler_config(options, manifest.max_model_len, bytes_per_block, manifest.max_model_len)
    kv_cache = torch.zeros(kv.shape(sched.num_blocks), dtype=executor.kv_dtype, device=backend.device)
    tokenizer = Tokenizer.from_dir(root / manifest.tokenizer.dir, manifest.generation.eos_token_ids)
    eos = tuple(manifest.generation.eos_token_ids) or tuple(tokenizer.eos_token_ids)
    info = ModelInfo(name=str(path), vocab_size=manifest.model.vocab_size, max_model_len=sched.max_model_len,
                     eos_token_ids=eos)
    engine = LLMEngine(executor, kv_cache, tokenizer, info, sched, options.seed)
    weakref.finalize(engine, _log_stats, engine.runner.stats, str(path))
    logger.info("loaded artifact %s (%s, %s, %d buckets, %d KV blocks) in %.2fs", path, manifest.target,
                manifest.dtype, len(manifest.buckets), sched.num_blocks, time.perf_counter() - start)
    return engine
