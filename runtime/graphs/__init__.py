"""Graph backends: how the runtime checks and runs one target's compiled graph files.

The runtime side of compile/targets/. An artifact's manifest names its `target`; `get_backend`
imports the module registered for it (never anything from compile/), and the loader then calls:

- `backend.prepare(artifact_dir)`: first, before anything touches the device (hpu points its
  recipe cache into the artifact here; cpu and cuda have nothing to do).
- `backend.check_fingerprint(fingerprint)`: the manifest's fingerprint against this process and
  machine (torch version, platform, CPU ISA / GPU compute capability / Gaudi generation and
  software version). A mismatch is a ValueError, one sentence that says what to rebuild: a graph
  built for another machine must never be loaded, since it could crash the process.
- `backend.device`: where the KV cache and the graph inputs must live.
- `backend.load(path)`: one graph file, not yet runnable. Returns a `Graph`.
- `graph.constant_fqns()`: the weight FQNs the graph needs (Hugging Face names).
- `graph.bind(constants)`: exactly those FQNs -> CPU tensors memory-mapped from
  weights.safetensors. Before any `run`. A backend whose device is not the CPU places each weight
  with `backend.to_device(fqn, tensor)`, which makes one device copy per weight however many graphs
  bind it; on the CPU the mapped tensors are used as they are, never copied.
- `backend.to_device(fqn, tensor)`: that shared device copy (the loader uses it for the LM head).
- `graph.run(inputs)`: inputs are the GRAPH_INPUTS tensors, in that order, already checked for
  shape and dtype by the caller; returns [hidden [B, Q, hidden_size]] and writes the step's K/V
  into kv_cache in place.

A backend module exposes `make_backend(target: str) -> GraphBackend`.
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import torch

# the flat inputs of every graph, in order: LlamaForCausalLM.forward(input_ids, positions, kv_cache,
# AttentionMetadata(slot_mapping, block_tables, seq_lens)) flattened as torch.export does
GRAPH_INPUTS = ("input_ids", "positions", "kv_cache", "slot_mapping", "block_tables", "seq_lens")

# manifest target -> module providing make_backend
BACKENDS: dict[str, str] = {
    "cpu": "runtime.graphs.aoti",
    "cuda": "runtime.graphs.aoti",
    "hpu": "runtime.graphs.hpu",
}


class Graph(Protocol):
    def constant_fqns(self) -> list[str]: ...

    def bind(self, constants: Mapping[str, torch.Tensor]) -> None: ...

    def run(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]: ...


class GraphBackend(Protocol):
    device: torch.device

    def prepare(self, artifact_dir: Path) -> None: ...

    def check_fingerprint(self, fingerprint: Mapping[str, str]) -> None: ...

    def load(self, path: Path) -> Graph: ...

    def to_device(self, fqn: str, tensor: torch.Tensor) -> torch.Tensor: ...


def get_backend(target: str) -> GraphBackend:
    """The graph backend for a manifest's target; ValueError if this runtime cannot run that target."""
    if target not in BACKENDS:
        raise ValueError(f"the artifact targets {target!r}, which this runtime does not know; rebuild it with "
                         f"--target {' or '.join(BACKENDS)}.")
    try:
        module = importlib.import_module(BACKENDS[target])
    except ImportError as err:
        raise ValueError(f"the artifact targets {target}, but this runtime cannot run {target} graphs "
                         f"({err.name} is not installed); run it on a {target} machine or rebuild it for this one.") from err
    return module.make_backend(target)


def check_common_fingerprint(fingerprint: Mapping[str, str]) -> None:
    """The keys every target records: torch version, OS and machine architecture."""
    import platform
    import sys

    here = {"torch_version": torch.__version__, "platform": sys.platform, "machine": platform.machine()}
    what = {"torch_version": "torch", "platform": "OS", "machine": "machine architecture"}
    for key, value in here.items():
        built = fingerprint.get(key)
        if built != value:
            raise ValueError(f"the artifact was built with {what[key]} {built} but this machine runs {value}; "
                             "rebuild it here with gaudi-compile build.")
