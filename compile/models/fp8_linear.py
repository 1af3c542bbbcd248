"""FP8 linear layers: float8_e4m3fn weights with per-output-channel scales, one kernel per target.

The offline step (compile/quantize.py) swaps each decoder nn.Linear for an `FP8Linear` of the same
shape and assigns its tensors (gpt-fast's pattern); the model code is unchanged. Under the replaced
layer's Hugging Face prefix an FP8Linear holds:

    weight        [out, in] float8_e4m3fn, columns in the kernel's storage order (`kernel.pack`)
    weight_scale  [out] float32   weight value = e4m3 code * weight_scale[row]
    input_scale   [] float32      activation x ~ e4m3 code * input_scale, static, from calibration
    bias          [out]           build dtype, when the layer has one

`get_kernel(target)` is the one dispatch point for how a target stores and multiplies the weights:

- cpu: weight-only. Activations stay in the build dtype; input_scale is recorded, not used. Up to
  GEMV_MAX_ROWS rows (decode) run as a GEMV that inductor compiles into one vectorised loop reading
  one byte per weight; more rows decode the weights once and call the CPU's fastest GEMM: bfloat16
  with AVX512-BF16 or AMX, else float32, which on AVX2 is several times faster than emulated
  bfloat16 (benchmarks/fp8_bench.py measures batch 1 and 32 against the bf16 build).
- cuda: activations quantised to e4m3 with the static input_scale, then `torch._scaled_mm` with
  row-wise scales (per-tensor input scale broadcast over rows, per-channel weight scale).
- hpu: the same scheme through Habana's `torch.ops.hpu.cast_to_fp8_v2` and `torch.ops.hpu.fp8_gemm_v2`,
  written to Habana's documented API and tested against a fake; it has not run on a Gaudi here.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

E4M3_MAX = 448.0             # largest finite float8_e4m3fn
GEMV_MAX_ROWS = 4            # cpu: up to this many rows run as a GEMV, more as decode + float32 GEMM
_TWO_POW_120 = 2.0 ** 120    # e4m3 bits placed in an fp32 read as value * 2**-120 (exponent bias 7 vs 127)
_SIGN = -(2 ** 31)           # 0x80000000 as an int32
_MAGNITUDE = 0x07F00000      # where an e4m3 code's exponent and mantissa land in an fp32 (bits 20-26)
_HIGH_HALF = -(2 ** 16)      # 0xFFFF0000 as an int32: the upper bfloat16 of a 32-bit word


def quantize_weight(weight: torch.Tensor, fp8_max: float = E4M3_MAX) -> tuple[torch.Tensor, torch.Tensor]:
    """[out, in] float -> (e4m3 codes [out, in], float32 scales [out]), one scale per output channel."""
    w = weight.detach().float()
    scale = (w.abs().amax(dim=1) / fp8_max).clamp(min=1e-12)                     # [out]
    codes = (w / scale[:, None]).clamp(-fp8_max, fp8_max).to(torch.float8_e4m3fn)
    return codes, scale


def decode_e4m3_words(words: torch.Tensor, byte: int) -> torch.Tensor:
    """Byte `byte` of every 32-bit word of e4m3 codes, as its exact value times 2**-120 in float32.

    The code s.eeee.mmm becomes the fp32 bits s.0000eeee.mmm0...0: the sign moves to bit 31 and the
    other seven bits to bits 20-26. Read as an fp32 that is the e4m3 value times 2**-120, subnormals
    included. Why `words` is float32 and not int32: inductor's AVX2 int32 loads go through a memcpy that
    stalls store forwarding, while float32 loads are plain vector loads; the int32 view is a free bitcast.
    """
    bits = words.view(torch.int32)
    sign = (bits << (24 - 8 * byte) if byte < 3 else bits) & _SIGN
    magnitude = (bits << (20 - 8 * byte) if byte < 3 else bits >> 4) & _MAGNITUDE
    return (sign | magnitude).view(torch.float32)


class CpuKernel:
    """Weight-only FP8 for AVX2-class CPUs, pure torch that inductor compiles (no custom op to register).

    Storage order: column c = h*in/2 + 2r + p is stored at 4r + 2h + p, so 32-bit word r of a row holds the
    four codes that pair with bfloat16 words r and in/4 + r of the activation (see `_gemv`).
    """

    name = "cpu"
    fp8_max = E4M3_MAX
    activation_scales = "recorded, unused: activations stay in the build dtype (weight-only FP8)"
    layout = "column c = h*in/2 + 2r + p of [out, in] is stored at 4r + 2h + p (h < 2, r < in/4, p < 2)"

    @staticmethod
    def check(in_features: int, out_features: int) -> None:
        if in_features % 4:
            raise ValueError(f"FP8 on cpu packs 4 weights per 32-bit word, so in_features must be a multiple of 4, "
                             f"got {in_features}; build this model without --quant fp8.")

    @staticmethod
    def column_order(in_features: int) -> torch.Tensor:
        """[in] storage position -> original column."""
        return torch.arange(in_features).view(2, in_features // 4, 2).permute(1, 0, 2).reshape(-1)

    @classmethod
    def pack(cls, codes: torch.Tensor) -> torch.Tensor:
        return codes[:, cls.column_order(codes.shape[1])].contiguous()

    @classmethod
    def unpack(cls, stored: torch.Tensor) -> torch.Tensor:
        return stored[:, torch.argsort(cls.column_order(stored.shape[1]))].contiguous()

    @staticmethod
    def matmul(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor,
               input_scale: torch.Tensor) -> torch.Tensor:
        """x [M, in] -> [M, out] float32."""
        if x.shape[0] <= GEMV_MAX_ROWS:
            return CpuKernel._gemv(x, weight, weight_scale)
        return CpuKernel._dequant_mm(x, weight, weight_scale)

    @staticmethod
    def _gemv(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor) -> torch.Tensor:
        # Decode is memory-bound: read 1 byte per weight and never write the decoded weights out.
        rows, in_features = x.shape
        words = weight.view(torch.float32)                                      # [out, in/4], 4 codes per word
        # The activation as 32-bit words of two bfloat16 each. The dtype view changes the element size, so
        # inductor must write x out once; otherwise it would recompute x's producer (e.g. silu) for every
        # output row, with bfloat16 loads that stall like the int32 ones above.
        x_words = x.to(torch.bfloat16).contiguous().view(torch.float32).view(rows, 2, in_features // 4)
        scale = (weight_scale * _TWO_POW_120)[:, None]                          # [out, 1]
        acc = None
        for h in range(2):
            bits = x_words[:, h].view(torch.int32)                              # [M, in/4]
            halves = ((bits << 16).view(torch.float32), (bits & _HIGH_HALF).view(torch.float32))
            for p in range(2):                                                  # x columns h*in/2 + 2r + p
                w = decode_e4m3_words(words, 2 * h + p) * scale                 # [out, in/4]
                term = halves[p][:, None, :] * w[None]                          # [M, out, in/4]
                acc = term if acc is None else acc + term
        return acc.sum(-1)                                                      # [M, out]

    @staticmethod
    def _dequant_mm(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor) -> torch.Tensor:
        # Prefill and large batches are compute-bound: decode once (exactly: an e4m3 value fits bfloat16),
        # then the fastest GEMM of the CPU the graph is built on (graphs are tied to their CPU's ISA).
        rows, in_features = x.shape
        gemm_dtype = gemm_dtype_for_this_cpu(x.dtype)
        words = weight.view(torch.float32)
        planes = [decode_e4m3_words(words, j) * _TWO_POW_120 for j in range(4)]   # 4 x [out, in/4]
        w = torch.stack(planes, dim=1).view(weight.shape[0], in_features).to(gemm_dtype)   # column j*in/4 + r
        x_planes = x.view(rows, 2, in_features // 4, 2).transpose(2, 3).reshape(rows, in_features)  # same order
        return F.linear(x_planes.to(gemm_dtype), w).float() * weight_scale


def gemm_dtype_for_this_cpu(activation_dtype: torch.dtype) -> torch.dtype:
    """bfloat16 for bfloat16 activations where the CPU has bfloat16 dot products (AVX512-BF16, AMX),
    else float32 (so a float32 build stays exact).

    Measured for a 1024x2816 layer at 32 rows (2 threads, compiled): decode + float32 GEMM 4.9 ms and
    decode + bfloat16 GEMM 1.1 ms on an AVX512-BF16 CPU (the bfloat16 layer itself: 0.54 ms); on AVX2,
    where bfloat16 GEMMs are emulated, float32 was 3.7-5.8x faster than bfloat16.
    """
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return torch.bfloat16 if native and activation_dtype == torch.bfloat16 else torch.float32


class CudaKernel:
    """W8A8 on NVIDIA GPUs (compute capability 8.9+): torch._scaled_mm with row-wise scales."""

    name = "cuda"
    fp8_max = E4M3_MAX
    layout = "[out, in] as nn.Linear"
    activation_scales = "used: activations are quantised to e4m3 with the static input_scale"

    @staticmethod
    def check(in_features: int, out_features: int) -> None:
        if in_features % 16 or out_features % 16:
            raise ValueError(f"FP8 on cuda (torch._scaled_mm) needs layer sizes that are multiples of 16, got "
                             f"{in_features}x{out_features}; build this model without --quant fp8.")

    pack = unpack = staticmethod(lambda codes: codes.contiguous())

    @staticmethod
    def matmul(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor,
               input_scale: torch.Tensor) -> torch.Tensor:
        rows = x.shape[0]
        x_codes = (x.float() / input_scale).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)   # [M, in]
        out = torch._scaled_mm(x_codes, weight.t(), scale_a=input_scale.reshape(1, 1).expand(rows, 1).contiguous(),
                               scale_b=weight_scale.reshape(1, -1).contiguous(), out_dtype=torch.bfloat16)
        return out.float()                                                       # [M, out]


class HpuKernel:
    """W8A8 on Gaudi through Habana's FP8 ops (as vLLM's Gaudi backend calls them)."""

    name = "hpu"
    # Gaudi2 represents e4m3 with a largest value of 240 (Gaudi3 reaches 448): quantise to what both hold.
    fp8_max = 240.0
    layout = "[out, in] as nn.Linear"
    activation_scales = "used: activations are cast to e4m3 with the static input_scale (cast_to_fp8_v2)"
    check = staticmethod(lambda in_features, out_features: None)
    pack = unpack = staticmethod(lambda codes: codes.contiguous())

    @staticmethod
    def matmul(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor,
               input_scale: torch.Tensor) -> torch.Tensor:
        ops = getattr(torch.ops, "hpu", None)
        if ops is None or not hasattr(ops, "fp8_gemm_v2") or not hasattr(ops, "cast_to_fp8_v2"):
            raise RuntimeError("FP8 on hpu needs Habana's torch.ops.hpu.fp8_gemm_v2 and cast_to_fp8_v2 (import "
                               "habana_frameworks.torch on a Gaudi machine); this process has neither.")
        # cast_to_fp8_v2(input, scale, stochastic_rounding, is_amax, dtype) multiplies by `scale`
        x_codes = ops.cast_to_fp8_v2(x, 1.0 / input_scale, False, False, torch.float8_e4m3fn)[0]
        # fp8_gemm_v2(A, trans_A, B, trans_B, D, out_dtype, A_scale_inv, B_scale_inv, bias, accumulate):
        # A @ B^T for B = weight [out, in]; the *_scale_inv tensors are the dequantisation scales.
        out = ops.fp8_gemm_v2(x_codes, False, weight, True, None, torch.float32, input_scale, weight_scale,
                              None, False)
        return out                                                               # [M, out]


KERNELS = {"cpu": CpuKernel, "cuda": CudaKernel, "hpu": HpuKernel}


def get_kernel(target: str):
    """The FP8 kernel of a target: the one place a device decides how FP8 weights are stored and multiplied."""
    if target not in KERNELS:
        raise ValueError(f"FP8 is not available for target {target!r}; use one of {', '.join(KERNELS)}.")
    return KERNELS[target]


class FP8Linear(nn.Module):
    """Drop-in for nn.Linear(in_features, out_features) with e4m3 weights (see the module docstring)."""

    def __init__(self, in_features: int, out_features: int, bias: bool, target: str,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.kernel = get_kernel(target)
        self.kernel.check(in_features, out_features)
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.float8_e4m3fn,
                                                   device=device))
        self.register_buffer("weight_scale", torch.ones(out_features, dtype=torch.float32, device=device))
        self.register_buffer("input_scale", torch.ones((), dtype=torch.float32, device=device))
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype, device=device), requires_grad=False) \
            if bias else None
        self.eager_weight: torch.Tensor | None = None     # see use_eager_weight; never part of a graph

    def use_eager_weight(self, enabled: bool) -> None:
        """Build-time eager runs (the quality report): multiply by the dequantised float32 weight, decoded once.

        Only for the weight-only cpu kernel, where these are exactly the weight values it multiplies by (its
        GEMV rounds activations to bfloat16, and a bf16 build on a CPU with bf16 dot products multiplies more
        than GEMV_MAX_ROWS rows in bfloat16: the report leaves out those activation roundings). Its graph
        formulation decodes on every call, which is fast compiled and ~10x slower than bf16 eagerly.
        """
        self.eager_weight = self.dequantized_weight() if enabled and self.kernel.name == "cpu" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)                                    # [M, in]
        if self.eager_weight is not None:
            out = F.linear(rows.float(), self.eager_weight)                       # [M, out] float32
        else:
            out = self.kernel.matmul(rows, self.weight, self.weight_scale, self.input_scale)   # [M, out] float32
        if self.bias is not None:
            out = out + self.bias.float()
        return out.to(x.dtype).view(*x.shape[:-1], self.out_features)

    def dequantized_weight(self) -> torch.Tensor:
        """[out, in] float32 weight in the original column order: the reference the kernels approximate."""
        return self.kernel.unpack(self.weight).float() * self.weight_scale[:, None]

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, kernel={self.kernel.name}"


class FP8Embedding(nn.Module):
    """Drop-in for nn.Embedding(num_embeddings, embedding_dim): e4m3 rows, one float32 scale per row.

    Same layout on every target: a step gathers only its tokens' rows, so a plain cast is cheap.
    Buffers: weight [num, dim] float8_e4m3fn, weight_scale [num] float32.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, dtype: torch.dtype,
                 device: torch.device | str | None = None):
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.out_dtype = num_embeddings, embedding_dim, dtype
        self.register_buffer("weight", torch.zeros(num_embeddings, embedding_dim, dtype=torch.float8_e4m3fn,
                                                   device=device))
        self.register_buffer("weight_scale", torch.ones(num_embeddings, dtype=torch.float32, device=device))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = self.weight[ids].float() * self.weight_scale[ids].unsqueeze(-1)     # [..., dim]
        return rows.to(self.out_dtype)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, e4m3"
