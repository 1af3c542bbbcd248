"""The cuda target: AOTInductor on a CUDA GPU; the graphs are tied to the GPU's compute capability."""
from __future__ import annotations

import torch

from compile.targets.aoti import AotiTarget


class CudaTarget(AotiTarget):
    name = "cuda"

    @property
    def device(self) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device())

    def check_available(self) -> None:
        if not torch.cuda.is_available():
            raise ValueError("--target cuda needs a CUDA GPU and a CUDA build of torch, and this machine has "
                             "neither; build on a GPU machine or pick --target cpu.")

    def fingerprint(self) -> dict[str, str]:
        major, minor = torch.cuda.get_device_capability(self.device)
        return {**super().fingerprint(), "compute_capability": f"{major}.{minor}",
                "cuda_version": str(torch.version.cuda)}
