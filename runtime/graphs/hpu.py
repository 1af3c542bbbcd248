"""Running hpu graphs: exported programs bound to the artifact's weights, compiled by Habana's stack.

A graph file is a torch.export program whose weights were replaced by meta tensors at build time.
Loading it binds the artifact's one weights file by FQN (each weight moved to the Gaudi once and
shared by every graph), then hands the program to Habana: `torch.compile(backend="hpu_backend")`,
or `habana_frameworks.torch.hpu.wrap_in_hpu_graph` when the process runs in lazy mode
(PT_HPU_LAZY_MODE=1). The compiled recipes come from the artifact's recipe cache (recipe_cache/),
which the build warmed by running every graph once.

Written to Habana's documented API (docs.habana.ai: Runtime Environment Variables, HPU graphs,
torch.compile with hpu_backend) and tested against a fake habana_frameworks module; it has not
run on a Gaudi here.
"""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import torch

from runtime.attention_metadata import AttentionMetadata
from runtime.graphs import check_common_fingerprint

logger = logging.getLogger(__name__)

DEVICE = torch.device("hpu")
RECIPE_CACHE_DIR = "recipe_cache"        # inside the artifact directory
RECIPE_CACHE_ENV = "PT_HPU_RECIPE_CACHE_CONFIG"
# the cap Habana enforces on the cache folder; past it the oldest recipes are dropped
RECIPE_CACHE_MAX_MB = 16384
_MISSING = ("this artifact targets hpu, which needs Intel Gaudi's habana_frameworks, and it is not installed "
            "here; run it on a Gaudi machine with the Gaudi software stack, or rebuild it with --target cpu.")


def recipe_cache_config(artifact_dir: Path) -> str:
    """PT_HPU_RECIPE_CACHE_CONFIG for the artifact: "<path>,<delete at start>,<max size MB>".

    Never delete at start: the recipes are the build's output, reused on every start-up.
    """
    path = (Path(artifact_dir) / RECIPE_CACHE_DIR).resolve()
    if "," in str(path):
        raise ValueError(f"{path} contains a comma, which Habana's recipe cache setting cannot hold; move the "
                         "artifact to a path without commas.")
    return f"{path},false,{RECIPE_CACHE_MAX_MB}"


def use_recipe_cache(artifact_dir: Path) -> None:
    """Point Habana's recipe cache at the artifact's, before anything starts Habana's stack.

    Why an environment variable: it is the only way Habana's PyTorch bridge takes a recipe cache,
    and it reads it once, when the stack starts; a later change is ignored. So this must run
    before habana_frameworks is imported, and it holds for the whole process.
    """
    config = recipe_cache_config(artifact_dir)
    Path(config.split(",")[0]).mkdir(parents=True, exist_ok=True)
    if "habana_frameworks.torch" in sys.modules and os.environ.get(RECIPE_CACHE_ENV) != config:
        logger.warning("Habana's stack started before the recipe cache of %s could be set; its graphs compile "
                       "at first use instead of loading the build's recipes", artifact_dir)
    os.environ[RECIPE_CACHE_ENV] = config


def habana():
    """The habana_frameworks.torch package (which registers hpu_backend and the hpu ops); ValueError if missing."""
    try:
        import habana_frameworks.torch as htorch
        import habana_frameworks.torch.core  # noqa: F401  (mark_step, and the ops exported programs name)
        import habana_frameworks.torch.hpu  # noqa: F401
    except ImportError as err:
        raise ValueError(_MISSING) from err
    return htorch


def is_lazy_mode() -> bool:
    from habana_frameworks.torch.utils.internal import is_lazy

    return bool(is_lazy())


def load_program(path: Path) -> torch.export.ExportedProgram:
    """A graph file as saved by the hpu target (weights on the meta device)."""
    # the example inputs hold an AttentionMetadata; allow it under torch.load's weights_only rules
    with torch.serialization.safe_globals([AttentionMetadata]):
        return torch.export.load(str(path))


class HpuGraph:
    """One bucket's program: unusable until `bind` has given it every weight it names."""

    def __init__(self, program: torch.export.ExportedProgram, path: Path, backend: "HpuBackend"):
        self.program = program
        self.path = path
        self._backend = backend
        self._runnable = None

    def constant_fqns(self) -> list[str]:
        return list(self.program.state_dict)

    def bind(self, constants: Mapping[str, torch.Tensor]) -> None:
        state = self.program.state_dict
        missing = sorted(set(state) - set(constants))
        if missing:
            raise ValueError(f"graph {self.path.name} needs weights {', '.join(missing[:3])} that were not given; "
                             "rebuild the artifact.")
        for name, placeholder in state.items():
            tensor = constants[name]
            if tensor.shape != placeholder.shape or tensor.dtype != placeholder.dtype:
                raise ValueError(f"weight {name} is {tuple(tensor.shape)} {tensor.dtype} but graph {self.path.name} "
                                 f"was built for {tuple(placeholder.shape)} {placeholder.dtype}; rebuild the artifact.")
        for name, placeholder in list(state.items()):
            on_device = self._backend.to_device(name, constants[name])
            # assign, not copy: every graph's parameter is the same device tensor
            is_param = isinstance(placeholder, torch.nn.Parameter)
            state[name] = torch.nn.Parameter(on_device, requires_grad=False) if is_param else on_device
        for name, value in list(self.program.constants.items()):
            if isinstance(value, torch.Tensor):
                self.program.constants[name] = value.to(self._backend.device)   # derived, tiny (RoPE inv_freq)
        self._runnable = self._backend.compile(self.program.module())

    def run(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        if self._runnable is None:
            raise RuntimeError(f"graph {self.path.name} was run before its weights were bound")
        input_ids, positions, kv_cache, slot_mapping, block_tables, seq_lens = inputs
        with torch.no_grad():
            hidden = self._runnable(input_ids, positions, kv_cache,
                                    AttentionMetadata(slot_mapping, block_tables, seq_lens))   # [B, Q, hidden]
        if self._backend.is_lazy:
            import habana_frameworks.torch.core as htcore

            htcore.mark_step()   # lazy mode: launch the accumulated graph now
        return [hidden]


class HpuBackend:
    """The runtime side of the hpu target; see runtime/graphs/__init__.py for the protocol."""

    def __init__(self, target: str = "hpu"):
        self.target = target
        self.device = DEVICE
        self._on_device: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}   # id(host) -> (host, device copy)
        self._is_lazy: bool | None = None

    @property
    def is_lazy(self) -> bool:
        if self._is_lazy is None:
            habana()
            self._is_lazy = is_lazy_mode()
        return self._is_lazy

    def prepare(self, artifact_dir: Path) -> None:
        """Called first, before anything touches the device: point Habana's recipe cache into the artifact."""
        use_recipe_cache(artifact_dir)

    def check_fingerprint(self, fingerprint: Mapping[str, str]) -> None:
        check_common_fingerprint(fingerprint)
        htorch = habana()
        generation = htorch.hpu.get_device_name() if htorch.hpu.is_available() else ""
        if not generation:
            raise ValueError("this artifact targets hpu but no Gaudi device is visible here; run it on a Gaudi "
                             "machine (check hl-smi) or rebuild it with --target cpu.")
        built = fingerprint.get("gaudi_generation")
        if built != generation:
            raise ValueError(f"the artifact was built for {built} but this machine's accelerator is {generation}; "
                             "rebuild it here with gaudi-compile build --target hpu.")
        version = str(getattr(htorch, "__version__", "unknown"))
        if fingerprint.get("software_version") != version:
            raise ValueError(f"the artifact was built with Gaudi software {fingerprint.get('software_version')} "
                             f"but this machine runs {version}; rebuild it here with gaudi-compile build --target hpu.")

    def load(self, path: Path) -> HpuGraph:
        habana()   # registers the hpu ops (FusedSDPA's) that the program names, before deserialising it
        return HpuGraph(load_program(path), Path(path), self)

    def to_device(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        """The device copy of a weight, made once however many graphs (or tied names) bind that tensor."""
        cached = self._on_device.get(id(tensor))
        if cached is None:   # the entry holds the host tensor too, so its id is never reused
            cached = self._on_device[id(tensor)] = (tensor, tensor.to(self.device))
        return cached[1]

    def compile(self, module: torch.nn.Module):
        """A callable that runs `module` through Habana's graph compiler: HPU graphs in lazy mode, else hpu_backend."""
        htorch = habana()
        if self.is_lazy:
            return htorch.hpu.wrap_in_hpu_graph(module)
        # static shapes: one graph per bucket, as the build warmed it (no dynamic-shape recompiles)
        return torch.compile(module, backend="hpu_backend", dynamic=False)


def make_backend(target: str) -> HpuBackend:
    return HpuBackend(target)
