"""Running AOTInductor graphs (.pt2) on cpu or cuda, without torch._inductor and without a compiler.

Why the C++ loader directly: torch._inductor.aoti_load_package imports inductor and test-compiles
ISA probes with g++ on first use (about 2.4 s), and only warns when the package does not match
the CPU. `AOTIModelPackageLoader` loads a graph in milliseconds. Two of its sharp edges are
handled here: a graph run before its constants are bound crashes the process (so `run` refuses),
and user-managed constants are bound without any shape, dtype or layout check (so `bind` checks
contiguity and the loader checks shapes against the manifest).
"""
from __future__ import annotations

import platform
from collections.abc import Mapping
from pathlib import Path

import torch

from runtime.graphs import check_common_fingerprint

# inductor's ISA words -> does this CPU have it (the checks inductor's own x86 ISA checker uses)
_CPU_FEATURES = {
    "avx2": torch.cpu._is_avx2_supported,
    "avx512": torch.cpu._is_avx512_supported,
    "avx512_vnni": torch.cpu._is_vnni_supported,
    "amx_tile": torch.cpu._is_amx_tile_supported,
    "asimd": lambda: platform.machine() in ("aarch64", "arm64"),
    "none": lambda: True,
}
# compiler flags that need a CPU feature beyond the ISA words
_FLAG_FEATURES = {"-mavx512bf16": torch.cpu._is_avx512_bf16_supported,
                  "-mamx-fp16": torch.cpu._is_amx_fp16_supported}


class AotiGraph:
    """One .pt2 graph: unusable until `bind` has given it every constant it names."""

    def __init__(self, path: Path, backend: "AotiBackend"):
        device = backend.device
        index = device.index if device.type == "cuda" else -1
        # args: package path, model name inside it, run single-threaded, number of runners, device index
        self._loader = torch._C._aoti.AOTIModelPackageLoader(str(path), "model", False, 1,
                                                              -1 if index is None else index)
        self._is_bound = False
        self._backend = backend
        self.path = path

    def constant_fqns(self) -> list[str]:
        return list(self._loader.get_constant_fqns())

    def bind(self, constants: Mapping[str, torch.Tensor]) -> None:
        for name, tensor in constants.items():
            if not tensor.is_contiguous():   # strides are ignored by the binding: a view would read wrong values
                raise ValueError(f"weight {name} is not contiguous; rebuild the artifact.")
        placed = {name: self._backend.to_device(name, tensor) for name, tensor in constants.items()}
        # args: constants, use the inactive buffer, require every constant, user-managed (no copy)
        self._loader.load_constants(placed, False, True, True)
        self._is_bound = True

    def run(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        if not self._is_bound:
            raise RuntimeError(f"graph {self.path.name} was run before its weights were bound")
        return self._loader.run(inputs)


class AotiBackend:
    def __init__(self, target: str):
        self.target = target
        self.device = torch.device("cuda", torch.cuda.current_device()) if target == "cuda" and \
            torch.cuda.is_available() else torch.device(target)
        self._on_device: dict[str, torch.Tensor] = {}

    def prepare(self, artifact_dir: Path) -> None:
        """Nothing to set up before loading AOTI graphs."""

    def to_device(self, fqn: str, tensor: torch.Tensor) -> torch.Tensor:
        """The CPU tensor itself on the cpu target; one shared GPU copy per weight on cuda."""
        if tensor.device == self.device:
            return tensor
        if fqn not in self._on_device:
            self._on_device[fqn] = tensor.to(self.device)
        return self._on_device[fqn]

    def check_fingerprint(self, fingerprint: Mapping[str, str]) -> None:
        check_common_fingerprint(fingerprint)
        if self.target == "cuda":
            self._check_cuda(fingerprint)
        else:
            self._check_cpu(fingerprint)

    def _check_cpu(self, fingerprint: Mapping[str, str]) -> None:
        isa = fingerprint.get("cpu_isa", "")
        for word in isa.split() or ["?"]:
            check = _CPU_FEATURES.get(word)
            if check is None or not check():
                raise ValueError(f"the artifact's graphs need the CPU instruction set {isa!r}, which this CPU "
                                 "lacks; rebuild it on (or for) this machine with gaudi-compile build.")
        for flag, check in _FLAG_FEATURES.items():
            if flag in fingerprint.get("isa_flags", "").split() and not check():
                raise ValueError(f"the artifact's graphs were compiled with {flag}, which this CPU lacks; "
                                 "rebuild it on this machine with gaudi-compile build.")

    def _check_cuda(self, fingerprint: Mapping[str, str]) -> None:
        if not torch.cuda.is_available():
            raise ValueError("the artifact was built for a CUDA GPU and this machine has none; run it on a GPU "
                             "machine or rebuild it with --target cpu.")
        major, minor = torch.cuda.get_device_capability(self.device)
        built = fingerprint.get("compute_capability")
        if built != f"{major}.{minor}":
            raise ValueError(f"the artifact was built for GPU compute capability {built} but this GPU is "
                             f"{major}.{minor}; rebuild it on this machine with gaudi-compile build --target cuda.")

    def load(self, path: Path) -> AotiGraph:
        return AotiGraph(path, self)


def make_backend(target: str) -> AotiBackend:
    return AotiBackend(target)
