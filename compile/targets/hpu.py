"""The hpu target: exported programs without weights, plus a recipe cache warmed inside the artifact.

Each bucket's graph file is its torch.export program saved with `torch.export.save`, every
parameter replaced by a meta tensor of the same shape and dtype (the artifact's one weights file
is bound by FQN at load; runtime/graphs/hpu.py). The model is traced on the Gaudi with attention
through Habana's FusedSDPA (compile/models/attention_hpu.py, backend "fused_sdpa").

Once the artifact is complete, `finish_artifact` loads it with the runtime's own loader and runs
every bucket's graph once (compile/targets/hpu_warmup.py) with Habana's recipe cache pointed at
<artifact>/recipe_cache/, so the compiled recipes ship with the artifact and match what the
runtime looks up: same graphs, same compiler path, same default KV cache size. Why in a fresh
process: Habana reads the recipe cache setting (an environment variable) only when its stack
starts, and this build process started it long before, to trace on the device.

Written to Habana's documented API and tested against a fake habana_frameworks module; it has not
run on a Gaudi here.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

import compile.models.attention_hpu  # noqa: F401  (registers the "fused_sdpa" attention backend)
from compile.targets import GraphJob, Target
from runtime.graphs import hpu as hpu_graphs

_MISSING_STACK = ("--target hpu needs Intel Gaudi's habana_frameworks, which is not installed here; build on a "
                  "Gaudi machine with the Gaudi software stack, or pick --target cpu.")
_NO_DEVICE = ("--target hpu found habana_frameworks but no Gaudi device; check the device with hl-smi, or pick "
              "--target cpu.")
# the warm-up process compiles every bucket's recipes
WARMUP_TIMEOUT_S = 4 * 3600


def strip_weights(exported: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """The program with every parameter and buffer on the meta device (shape and dtype kept), in place.

    The example inputs (which include a KV cache) go to the meta device too, and the derived
    constants (RoPE inv_freq, a few floats) to the CPU, so the file is small and loads before
    Habana's stack has started.
    """
    state = exported.state_dict
    for name, tensor in list(state.items()):
        meta = torch.empty_like(tensor, device="meta")
        state[name] = torch.nn.Parameter(meta, requires_grad=False) if isinstance(tensor, torch.nn.Parameter) else meta
    for name, value in list(exported.constants.items()):
        if isinstance(value, torch.Tensor):
            exported.constants[name] = value.detach().to("cpu")
    exported.example_inputs = torch.utils._pytree.tree_map_only(
        torch.Tensor, lambda t: torch.empty_like(t, device="meta"), exported.example_inputs)
    return exported


class HpuTarget(Target):
    name = "hpu"
    graph_suffix = ".pt2"
    attention_backend = "fused_sdpa"

    @property
    def device(self) -> torch.device:
        return hpu_graphs.DEVICE

    def check_available(self) -> None:
        try:
            import habana_frameworks.torch.hpu as hthpu
        except ImportError as err:
            raise ValueError(_MISSING_STACK) from err
        if not hthpu.is_available():
            raise ValueError(_NO_DEVICE)

    def fingerprint(self) -> dict[str, str]:
        import habana_frameworks.torch as htorch
        import habana_frameworks.torch.hpu as hthpu

        return {**super().fingerprint(), "gaudi_generation": hthpu.get_device_name(),
                "software_version": str(getattr(htorch, "__version__", "unknown"))}

    def compile_graph(self, job: GraphJob) -> None:
        torch.export.save(strip_weights(job.exported), str(job.out_path))

    def finish_artifact(self, artifact_dir: Path) -> None:
        """Warm the artifact's recipe cache: every graph run once, in a fresh process, as the runtime runs it."""
        config = hpu_graphs.recipe_cache_config(artifact_dir)
        env = {**os.environ, hpu_graphs.RECIPE_CACHE_ENV: config}
        command = [sys.executable, "-m", "compile.targets.hpu_warmup", str(artifact_dir), "--device", str(self.device)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=WARMUP_TIMEOUT_S)
        if done.returncode != 0:
            raise RuntimeError(f"warming the recipe cache of {artifact_dir} failed:\n{done.stderr[-4000:]}")
