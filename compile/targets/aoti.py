"""AOTInductor: the graph compiler shared by the cpu and cuda targets.

Each bucket's ExportedProgram becomes one .pt2 package holding a compiled shared library and no
weights (`package_constants_in_so=False`): the runtime binds the artifact's one weights file to
every graph by FQN (runtime/graphs/aoti.py). A subclass adds the device check, the fingerprint and
device-specific inductor settings.
"""
from __future__ import annotations

import warnings

from compile.targets import GraphJob, Target

# inductor settings every AOTI build uses; the values are strings so they can key incremental rebuilds
BASE_SETTINGS: dict[str, str] = {
    "aot_inductor.package_constants_in_so": "False",   # weights live once, in weights.safetensors
}


def _parse(value: str):
    if value.isdigit():
        return int(value)
    return {"True": True, "False": False}.get(value, value)


class AotiTarget(Target):
    """Compiles with torch._inductor.aoti_compile_and_package; subclasses give device facts."""

    def settings(self) -> dict[str, str]:
        return dict(BASE_SETTINGS)

    def compile_graph(self, job: GraphJob) -> None:
        import torch._inductor

        if job.out_path.suffix != ".pt2":
            raise ValueError(f"AOTInductor packages must end in .pt2, got {job.out_path.name}.")
        configs = {key: _parse(value) for key, value in self.settings().items()}
        with warnings.catch_warnings():   # torch's own deprecation notices from its pytree pickling: noise here
            warnings.filterwarnings("ignore", category=FutureWarning, module="copyreg")
            torch._inductor.aoti_compile_and_package(job.exported, package_path=str(job.out_path),
                                                     inductor_configs=configs)
