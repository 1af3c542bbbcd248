"""Warm Habana's recipe cache: `python -m compile.targets.hpu_warmup ARTIFACT [--device hpu]`.

Run by the hpu target's build, in a fresh process whose PT_HPU_RECIPE_CACHE_CONFIG points into
the artifact. The artifact is loaded by the runtime's own loader, with default options, so each
graph is compiled exactly as `runtime.load` will compile it, against the same KV cache shape; then
every bucket runs once on padding (zeros; seq_lens 1). A recipe depends on the graph and its
shapes, never on values.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch

logger = logging.getLogger(__name__)


def padding_inputs(batch: int, query_len: int, num_blocks: int, kv_cache: torch.Tensor) -> list[torch.Tensor]:
    """GRAPH_INPUTS for one bucket, all padding: every token writes the null slot, sees the null block."""
    def zeros(*shape: int) -> torch.Tensor:
        return torch.zeros(shape, dtype=torch.int64, device=kv_cache.device)

    return [zeros(batch, query_len), zeros(batch, query_len), kv_cache, zeros(batch, query_len),
            zeros(batch, num_blocks), torch.ones(batch, dtype=torch.int64, device=kv_cache.device)]


def warm_up(artifact_dir: Path, device: torch.device) -> dict[str, float]:
    """Load the artifact as the runtime does and run each bucket's graph once; seconds per bucket."""
    import runtime
    from runtime.graphs import hpu as hpu_graphs

    hpu_graphs.DEVICE = device   # the build's device, passed on (the hpu target's own)
    engine = runtime.load(artifact_dir)
    executor, kv_cache = engine.runner.executor, engine.runner.kv_cache
    seconds = {}
    for bucket in executor.buckets:
        start = time.perf_counter()
        executor.graph(bucket.name).run(padding_inputs(*bucket.shape, kv_cache))
        seconds[bucket.name] = round(time.perf_counter() - start, 2)
        logger.info("warmed %s in %.1f s", bucket.name, seconds[bucket.name])
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--device", default="hpu")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    warm_up(args.artifact, torch.device(args.device))


if __name__ == "__main__":
    main()
