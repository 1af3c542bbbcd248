"""The cpu target: AOTInductor with the vector ISA pinned, so a graph runs on any CPU that has it.

Why pin `cpp.march`: inductor compiles with -march=native by default, which ties the .so to the
build CPU's micro-architecture (e.g. znver3) in ways the ISA name alone would not reveal. With the
march pinned to the ISA level (x86-64-v3 for AVX2, x86-64-v4 for AVX-512), the fingerprint's
`cpu_isa` is the whole CPU tie, and the runtime can check it without a compiler.
"""
from __future__ import annotations

import platform

from compile.targets.aoti import AotiTarget

# inductor's vector ISA (first word of its name) -> the -march level that enables exactly it
_MARCH = {"avx2": "x86-64-v3", "avx512": "x86-64-v4"}
_BASELINE_MARCH = {"x86_64": "x86-64", "AMD64": "x86-64", "aarch64": "armv8-a", "arm64": "armv8-a"}


def vec_isa() -> tuple[str, str]:
    """(ISA name as inductor writes it, e.g. 'avx2' or 'avx512 avx512_vnni amx_tile'; its compiler flags)."""
    from torch._inductor.cpu_vec_isa import pick_vec_isa

    isa = pick_vec_isa()
    if not isa:
        return "none", ""
    return str(isa), isa.build_arch_flags()


class CpuTarget(AotiTarget):
    name = "cpu"

    def check_available(self) -> None:
        import shutil

        from torch._inductor import config

        compiler = config.cpp.cxx[-1] if isinstance(config.cpp.cxx, tuple) else config.cpp.cxx
        if shutil.which(compiler) is None:
            raise ValueError(f"--target cpu compiles C++ with {compiler}, which is not on PATH; install a C++ "
                             "compiler (e.g. apt-get install g++) and build again.")

    def march(self) -> str:
        """The -march the graphs are compiled with: the ISA level on x86, the architecture baseline elsewhere."""
        machine, isa = platform.machine(), vec_isa()[0].split()[0]
        if machine in ("x86_64", "AMD64") and isa in _MARCH:
            return _MARCH[isa]
        return _BASELINE_MARCH.get(machine, "native")

    def fingerprint(self) -> dict[str, str]:
        isa, flags = vec_isa()
        return {**super().fingerprint(), "cpu_isa": isa, "isa_flags": flags, "march": self.march()}

    def settings(self) -> dict[str, str]:
        # realize_opcount_threshold: Inductor stores a pointwise result once it takes more than this many
        # ops instead of recomputing it inside every consumer loop. At its default (30) the rotary
        # embedding of q was recomputed for every key of the decode attention's reduction; at 8 a
        # decode step of the 200M model at batch 16 took 46 ms instead of 61 ms, at batch 1 24 ms
        # instead of 32 ms (the 30M model: unchanged within noise).
        return {**super().settings(), "cpp.march": self.march(), "realize_opcount_threshold": "8"}
