"""Targets: how the compile stage turns one bucket's traced model into a graph file.

A target is chosen once per build (`gaudi-compile build --target cpu|cuda|hpu`) and is the one
dispatch point for everything device-specific on the build side. The build asks it, in order:

1. `check_available()`: can this machine build for the target? Raise ValueError with one
   sentence naming the fix (e.g. "--target hpu needs habana_frameworks ...; build on a Gaudi
   machine or pick --target cpu.").
2. `device`, `attention_backend`: where the model and the example inputs live while tracing, and
   which attention backend (compile/models/attention.py) the model is built with.
3. `fingerprint()`: what the graphs will be tied to (str -> str), written to the manifest. Always
   "torch_version", "platform", "machine"; plus the target's own keys (cpu: "cpu_isa", "march";
   cuda: "compute_capability", "cuda_version"; hpu: "gaudi_generation", "software_version").
   The runtime side (runtime/graphs/) checks the same keys before loading anything.
4. `compile_graph(job)` once per bucket that needs building, possibly in a spawned worker
   process (so a target must be picklable and keep no state that matters between calls).
5. `finish_artifact(out_dir)` once the artifact is complete (manifest written): a target may
   add device caches to it there (hpu warms its recipe cache); the default does nothing.

What a target gets, `GraphJob`:
- `exported`: a `torch.export.ExportedProgram` of `LlamaForCausalLM.forward` traced at the
  bucket's static shapes, with the KV cache's num_blocks dimension dynamic (the runtime sizes the
  cache at start-up). Its flat user inputs are, in order, `runtime.graphs.GRAPH_INPUTS`:
  input_ids [B, Q] int64, positions [B, Q] int64, kv_cache [L, 2, num_blocks, block_size, Hkv, D]
  (build dtype, mutated in place), slot_mapping [B, Q] int64, block_tables [B, M] int64,
  seq_lens [B] int64; its one output is hidden [B, Q, hidden_size]. Parameters and buffers are
  lifted and named by their Hugging Face FQN; `exported.module()` and `exported.example_inputs`
  give back a runnable module and the example inputs for targets that compile from those.
- `bucket`: the runtime.buckets.Bucket being built.
- `out_path`: the file to write (graphs/<bucket.name><graph_suffix>, written through a temporary
  name by the build). The graph must NOT carry the weights: the artifact holds one copy of them
  (weights.safetensors) that the runtime binds to every graph by FQN.

What it returns: `compile_graph` returns nothing; the file at `out_path` is the result, and the
build records its sha256 in the manifest.

How the runtime loads it: runtime/graphs/ maps the manifest's `target` to a GraphBackend module
(runtime never imports compile/). Its `check_fingerprint(fingerprint)` raises a one-sentence
ValueError on a mismatch; `load(path)` returns a Graph that is bound to the weights it names
(`bind`) and whose `run(inputs)` takes the GRAPH_INPUTS list and returns [hidden]. A new target
adds one module here and one there.
"""
from __future__ import annotations

import importlib
import platform
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import torch

from runtime.buckets import Bucket

# target name -> "module:class"; imported on demand so a missing device stack only fails its own target
TARGETS: dict[str, str] = {
    "cpu": "compile.targets.cpu:CpuTarget",
    "cuda": "compile.targets.cuda:CudaTarget",
    "hpu": "compile.targets.hpu:HpuTarget",
}
# what the hpu module needs and where the error points when it cannot be imported
_MISSING_STACK_HINTS = {
    "hpu": "--target hpu needs Intel Gaudi's habana_frameworks, which is not installed here; build on a Gaudi "
           "machine with the Gaudi software stack, or pick --target cpu.",
}


@dataclass(frozen=True)
class GraphJob:
    """One bucket to compile: the traced program, its bucket, and the file to write."""
    exported: torch.export.ExportedProgram
    bucket: Bucket
    out_path: Path


class Target(ABC):
    """The build side of one device kind. See the module docstring for the contract."""

    name: str = ""
    graph_suffix: str = ".pt2"
    attention_backend: str = "sdpa"

    @property
    def device(self) -> torch.device:
        """Where the model and the example inputs live while tracing."""
        return torch.device("cpu")

    @abstractmethod
    def check_available(self) -> None:
        """Raise ValueError (one sentence naming the fix) if this machine cannot build for the target."""

    def fingerprint(self) -> dict[str, str]:
        """What the graphs are tied to; the target adds its own keys to these."""
        return {"torch_version": torch.__version__, "platform": sys.platform, "machine": platform.machine()}

    def settings(self) -> dict[str, str]:
        """Compiler settings that change the graph file; part of a graph's incremental-rebuild key."""
        return {}

    @abstractmethod
    def compile_graph(self, job: GraphJob) -> None:
        """Write job.out_path: the compiled graph for job.bucket, carrying no weights."""

    def finish_artifact(self, out_dir: Path) -> None:
        """Called once the artifact at out_dir is complete and loadable."""


def get_target(name: str) -> Target:
    """The target called `name`; ValueError if it is unknown or its device stack is not installed."""
    if name not in TARGETS:
        raise ValueError(f"target {name!r} is unknown; use one of {', '.join(TARGETS)}.")
    module_name, class_name = TARGETS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        if name in _MISSING_STACK_HINTS:
            raise ValueError(_MISSING_STACK_HINTS[name]) from err
        raise
    return getattr(module, class_name)()
