"""Compiling buckets: trace + target compile, one bucket at a time or in spawned worker processes.

A task is plain data (paths, names, a Bucket), so it crosses a process boundary as it is; a worker
loads the checkpoint once and keeps it for the tasks it gets. Each graph is written under a
temporary name and renamed into place, so an interrupted build never leaves a half-written graph.
"""
from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import torch

from compile.targets import GraphJob, get_target
from compile.trace import export_bucket
from runtime.buckets import Bucket

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CompileTask:
    model_dir: str
    dtype: str
    target: str
    bucket: Bucket
    block_size: int
    out_path: str
    quantized_weights: str | None = None   # an FP8 build's weights file: the worker's model takes its structure


@dataclass(frozen=True)
class CompileResult:
    bucket: Bucket
    export_s: float
    compile_s: float
    size_bytes: int


@functools.lru_cache(maxsize=1)
def _worker_model(model_dir: str, dtype: str, target: str, quantized_weights: str | None) -> torch.nn.Module:
    from compile.models.loader import load_model

    spec = get_target(target)
    model = load_model(model_dir, dtype, spec.attention_backend)
    if quantized_weights is not None:
        from safetensors.torch import load_file

        from compile.quantize import restore_quantized
        restore_quantized(model, load_file(quantized_weights), target)
    return model.to(spec.device)


def compile_task(task: CompileTask, model: torch.nn.Module | None = None) -> CompileResult:
    """Trace and compile one bucket into task.out_path."""
    target = get_target(task.target)
    model = model if model is not None else _worker_model(task.model_dir, task.dtype, task.target,
                                                          task.quantized_weights)
    start = time.perf_counter()
    exported = export_bucket(model, task.bucket, task.block_size, target.device)
    traced = time.perf_counter()
    out = Path(task.out_path)
    # a hidden folder next to the graph: same file name (AOTI names the package root after it), same filesystem
    partial_dir = out.parent / f".{out.stem}.partial"
    partial_dir.mkdir(exist_ok=True)
    target.compile_graph(GraphJob(exported, task.bucket, partial_dir / out.name))
    os.replace(partial_dir / out.name, out)
    shutil.rmtree(partial_dir)
    return CompileResult(task.bucket, round(traced - start, 2), round(time.perf_counter() - traced, 2),
                         out.stat().st_size)


def run_tasks(tasks: list[CompileTask], jobs: int, model: torch.nn.Module | None = None,
              progress: bool = True) -> Iterator[CompileResult]:
    """Compile every task, yielding results as they finish; `jobs` > 1 uses that many spawned workers."""
    if not tasks:
        return
    from tqdm.auto import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    bar = tqdm(total=len(tasks), desc="Compiling graphs", unit="graph", disable=not progress, dynamic_ncols=True)
    with logging_redirect_tqdm():
        try:
            for result in _results(tasks, jobs, model, bar):
                bar.update(1)
                logger.info("compiled %s in %.1f s (trace %.1f s, %.1f MB)", result.bucket.name,
                            result.export_s + result.compile_s, result.export_s, result.size_bytes / 1e6)
                yield result
        finally:
            bar.close()


def _results(tasks: list[CompileTask], jobs: int, model, bar) -> Iterator[CompileResult]:
    if jobs <= 1:
        for task in tasks:
            bar.set_postfix_str(task.bucket.name)
            yield compile_task(task, model)
        return
    # spawn, not fork: a forked child would inherit torch's thread pools in an undefined state
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=context) as pool:
        futures = [pool.submit(compile_task, task) for task in tasks]
        for future in as_completed(futures):
            yield future.result()
