"""FP8 quantisation at build time: calibrate, quantise, swap modules, describe the result.

    result = quantize_for_build(model, QuantConfig(scheme="fp8"), "cpu", tokenizer)
    # model now has FP8Linear decoder projections (and FP8 K/V scales if asked); write its weights as usual

Steps, as gpt-fast separates them from an unchanged model.py:
1. calibrate (compile/calibrate.py): run the eager model over calibration text and record the largest
   |input| of every decoder linear, and the largest |K| and |V| each layer writes to its cache;
2. quantise every decoder linear's weight to float8_e4m3fn with one scale per output channel, and its
   activations to a static per-tensor scale (amax / fp8 max); K/V get one scale each per layer;
3. measure the FP8 model against the build-dtype one on held-out text (compile/fp8_report.py);
4. swap: each nn.Linear is replaced by an FP8Linear of the same shape whose tensors are assigned.

Embeddings, the LM head and the norms stay in the build dtype; `quantize_embeddings` also stores the
embedding rows in e4m3 (one scale per row; a tied LM head then keeps its own build-dtype copy, since
the LM head runs in the runtime, outside the graphs). Everything lands in the one weights
file under the replaced layers' names (`<layer>.weight`, `<layer>.weight_scale`, `<layer>.input_scale`,
`<layer>.self_attn.k_scale` / `v_scale`); `manifest_section` tells the runtime and a reader where.
"""
from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from compile.calibrate import CalibrationStats, calibrate, decoder_linears
from compile.calibration_data import load_calibration_texts
from compile.models.fp8_linear import FP8Embedding, FP8Linear, get_kernel, quantize_weight
from compile.models.llama import LlamaForCausalLM

logger = logging.getLogger(__name__)

SCHEMES = ("none", "fp8")
KV_CACHE_DTYPES = ("auto", "fp8")
DEFAULT_CALIB_SAMPLES = 32
DEFAULT_CALIB_MAX_TOKENS = 256     # each calibration text is cut to this many tokens


@dataclass(frozen=True)
class QuantConfig:
    """How to quantise a build; the defaults quantise nothing."""
    scheme: str = "none"                      # "fp8": decoder linears in float8_e4m3fn
    kv_cache_dtype: str = "auto"              # "auto": the build dtype; "fp8": float8_e4m3fn with per-layer scales
    calib_data: Path | None = None            # None: the built-in set (compile/calibration_data.py)
    calib_samples: int = DEFAULT_CALIB_SAMPLES
    calib_max_tokens: int = DEFAULT_CALIB_MAX_TOKENS
    quantize_embeddings: bool = False         # embedding rows in e4m3 too (fp8 scheme only)

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ValueError(f"quantization {self.scheme!r} is unknown; use one of {', '.join(SCHEMES)}.")
        if self.kv_cache_dtype not in KV_CACHE_DTYPES:
            raise ValueError(f"kv cache dtype {self.kv_cache_dtype!r} is unknown; use one of "
                             f"{', '.join(KV_CACHE_DTYPES)}.")
        if self.calib_samples < 1:
            raise ValueError(f"calib_samples must be at least 1, got {self.calib_samples}.")
        if self.calib_max_tokens < 2:
            raise ValueError(f"calib_max_tokens must be at least 2, got {self.calib_max_tokens}.")
        if self.quantize_embeddings and self.scheme != "fp8":
            raise ValueError("--fp8-embeddings needs --quant fp8; add it or drop --fp8-embeddings.")
        if self.calib_data is not None and not self.is_enabled:
            raise ValueError("--calib-data is only used by --quant fp8 or --kv-cache-dtype fp8; add one of them "
                             "or drop --calib-data.")

    @property
    def is_enabled(self) -> bool:
        return self.scheme != "none" or self.kv_cache_dtype != "auto"

    @property
    def name_suffix(self) -> str:
        """Appended to a default artifact name: "-fp8", "-kvfp8", "-fp8-kvfp8" or nothing."""
        return ("-fp8" if self.scheme == "fp8" else "") + ("-emb" if self.quantize_embeddings else "") + \
            ("-kvfp8" if self.kv_cache_dtype == "fp8" else "")

    def calibration_texts(self) -> list[str]:
        """The texts calibration runs on; ValueError naming the fix if --calib-data is unusable."""
        return load_calibration_texts(self.calib_data, self.calib_samples)

    def graph_key(self) -> dict[str, str]:
        """What of this config a compiled graph depends on: the module structure, not the calibration data."""
        return {"scheme": self.scheme, "kv_cache_dtype": self.kv_cache_dtype,
                "quantize_embeddings": str(self.quantize_embeddings)}


@dataclass(frozen=True)
class QuantResult:
    manifest: dict            # the manifest's "quantization" section
    report: dict              # report.json's "fp8_quality" section


def fp8_linears(model: LlamaForCausalLM, stats: CalibrationStats, target: str) -> dict[str, FP8Linear]:
    """An FP8Linear for every decoder linear (not installed yet): quantised weights, calibrated input scale."""
    kernel = get_kernel(target)
    modules = {}
    for name, linear in decoder_linears(model).items():
        weight = linear.weight
        codes, scale = quantize_weight(weight, kernel.fp8_max)
        fp8 = FP8Linear(linear.in_features, linear.out_features, linear.bias is not None, target,
                        dtype=weight.dtype, device=weight.device)
        fp8.weight = kernel.pack(codes)
        fp8.weight_scale = scale
        fp8.input_scale = torch.tensor(max(stats.input_amax[name], 1e-12) / kernel.fp8_max, device=weight.device)
        if linear.bias is not None:
            fp8.bias = nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
        modules[name] = fp8
    return modules


def fp8_embedding(model: LlamaForCausalLM, target: str) -> FP8Embedding:
    """The embedding table in e4m3, one scale per row (not installed yet)."""
    table = model.model.embed_tokens.weight
    codes, scale = quantize_weight(table, get_kernel(target).fp8_max)
    embedding = FP8Embedding(table.shape[0], table.shape[1], table.dtype, table.device)
    embedding.weight, embedding.weight_scale = codes, scale
    return embedding


def kv_scales(stats: CalibrationStats, target: str) -> list[tuple[float, float]]:
    """Per layer (k_scale, v_scale): the calibrated range mapped onto the target's e4m3 range."""
    fp8_max = get_kernel(target).fp8_max
    return [(max(k, 1e-12) / fp8_max, max(v, 1e-12) / fp8_max) for k, v in zip(stats.k_amax, stats.v_amax)]


def swap_modules(model: nn.Module, modules: dict[str, nn.Module]) -> dict[str, nn.Module]:
    """Put each module in place of the one at its FQN; returns the replaced ones (to swap back)."""
    replaced = {}
    for name, module in modules.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        replaced[name] = getattr(parent, child)
        setattr(parent, child, module)
    return replaced


def set_kv_scales(model: LlamaForCausalLM, scales: list[tuple[float, float]] | None) -> None:
    """Give every attention layer its K/V scales (FP8 cache), or take them away (None: build-dtype cache)."""
    for layer, attn in enumerate(layer.self_attn for layer in model.model.layers):
        device = attn.q_proj.weight.device
        attn.k_scale = None if scales is None else torch.tensor(scales[layer][0], device=device)
        attn.v_scale = None if scales is None else torch.tensor(scales[layer][1], device=device)


@contextlib.contextmanager
def quantized(model: LlamaForCausalLM, modules: dict[str, nn.Module],
              scales: list[tuple[float, float]] | None) -> Iterator[LlamaForCausalLM]:
    """The model with FP8 modules and K/V scales installed for the duration of the block (eager runs)."""
    replaced = swap_modules(model, modules)
    set_kv_scales(model, scales)
    try:
        yield model
    finally:
        swap_modules(model, replaced)
        set_kv_scales(model, None)


def restore_quantized(model: LlamaForCausalLM, weights: dict[str, torch.Tensor], target: str) -> None:
    """Rebuild an FP8 build's module structure from its weights file (a compile worker's model).

    The file describes itself: every `<name>.weight_scale` is an FP8Linear at <name>, every
    `...self_attn.k_scale` an FP8 KV cache scale.
    """
    linears = decoder_linears(model)
    modules = {}
    for name, linear in linears.items():
        if f"{name}.weight_scale" in weights:
            fp8 = FP8Linear(linear.in_features, linear.out_features, linear.bias is not None, target,
                            dtype=linear.weight.dtype, device=linear.weight.device)
            fp8.load_state_dict({k.removeprefix(f"{name}."): v for k, v in weights.items()
                                 if k.startswith(f"{name}.")}, assign=True)
            modules[name] = fp8
    if "model.embed_tokens.weight_scale" in weights:
        table = model.model.embed_tokens.weight
        embedding = FP8Embedding(table.shape[0], table.shape[1], table.dtype, table.device)
        embedding.load_state_dict({"weight": weights["model.embed_tokens.weight"],
                                   "weight_scale": weights["model.embed_tokens.weight_scale"]}, assign=True)
        modules["model.embed_tokens"] = embedding
    swap_modules(model, modules)
    if "model.layers.0.self_attn.k_scale" in weights:
        set_kv_scales(model, [(float(weights[f"model.layers.{i}.self_attn.k_scale"]),
                               float(weights[f"model.layers.{i}.self_attn.v_scale"]))
                              for i in range(len(model.model.layers))])


def calibration_sequences(config: QuantConfig, tokenizer, max_tokens: int) -> list[list[int]]:
    texts = config.calibration_texts()
    sequences = [ids[:max_tokens] for ids in (tokenizer.encode(t) for t in texts)]
    sequences = [ids for ids in sequences if ids]
    if not sequences:
        raise ValueError(f"the calibration text {config.calib_data or '(built-in)'} tokenizes to nothing; "
                         "pass a file with real prompts.")
    return sequences


def quantize_for_build(model: LlamaForCausalLM, config: QuantConfig, target: str, tokenizer,
                       max_model_len: int | None = None) -> QuantResult:
    """Calibrate, measure and quantise `model` in place (see the module docstring)."""
    from compile.fp8_report import quality_report

    start = time.perf_counter()
    max_tokens = min(config.calib_max_tokens, max_model_len or config.calib_max_tokens)
    stats = calibrate(model, calibration_sequences(config, tokenizer, max_tokens))
    modules: dict[str, nn.Module] = fp8_linears(model, stats, target) if config.scheme == "fp8" else {}
    if config.quantize_embeddings:
        modules["model.embed_tokens"] = fp8_embedding(model, target)
    scales = kv_scales(stats, target) if config.kv_cache_dtype == "fp8" else None
    calibrated = time.perf_counter()
    linears = [m for m in modules.values() if isinstance(m, FP8Linear)]
    for linear in linears:                      # decoded once for the report's many eager steps
        linear.use_eager_weight(True)
    try:
        report = quality_report(model, lambda: quantized(model, modules, scales), tokenizer, max_model_len)
    finally:
        for linear in linears:
            linear.use_eager_weight(False)
    report["calibration_s"] = round(calibrated - start, 2)
    swap_modules(model, modules)
    set_kv_scales(model, scales)
    logger.info("FP8: %d modules quantised, KV cache %s, calibrated on %d samples (%d tokens); held-out KL "
                "mean %.4f, top-1 agreement %.3f", len(modules), config.kv_cache_dtype, stats.num_samples,
                stats.num_tokens, report["kl_mean"], report["top1_agreement"])
    linears = sorted(name for name, module in modules.items() if isinstance(module, FP8Linear))
    dtype = str(model.lm_head.weight.dtype).removeprefix("torch.")
    return QuantResult(manifest_section(config, target, linears, stats, len(model.model.layers), dtype), report)


def manifest_section(config: QuantConfig, target: str, modules: list[str], stats: CalibrationStats,
                     num_layers: int, dtype: str) -> dict:
    """The manifest's "quantization" entry: what is quantised, how, and the names of the scale tensors."""
    if not config.is_enabled:
        return {"scheme": "none"}
    kernel = get_kernel(target)
    section: dict = {"scheme": config.scheme,
                     "calibration": {"data": str(config.calib_data) if config.calib_data else "built-in",
                                     "samples": stats.num_samples, "tokens": stats.num_tokens}}
    if config.scheme == "fp8":
        section["weights"] = {
            "dtype": "float8_e4m3fn", "fp8_max": kernel.fp8_max, "kernel": kernel.name,
            "modules": modules,
            "tensors": {"weight": "{module}.weight", "weight_scale": "{module}.weight_scale",
                        "input_scale": "{module}.input_scale"},
            "weight_scale": "float32 [out_features], one per output channel: value = e4m3 code * scale",
            "input_scale": f"float32 [], static per tensor from calibration; {kernel.activation_scales}",
            "layout": kernel.layout,
            "not_quantized": f"{'' if config.quantize_embeddings else 'embeddings, '}lm_head and norms ({dtype})"}
    if config.quantize_embeddings:
        section["embeddings"] = {"module": "model.embed_tokens", "dtype": "float8_e4m3fn",
                                 "tensors": {"weight": "model.embed_tokens.weight",
                                             "weight_scale": "model.embed_tokens.weight_scale"},
                                 "weight_scale": "float32 [vocab_size], one per row: value = e4m3 code * scale"}
    if config.kv_cache_dtype == "fp8":
        section["kv_cache"] = {"dtype": "float8_e4m3fn", "fp8_max": kernel.fp8_max,
                               "scales": {"k": "model.layers.{layer}.self_attn.k_scale",
                                          "v": "model.layers.{layer}.self_attn.v_scale"},
                               "num_layers": num_layers,
                               "meaning": "float32 [] per layer: value = e4m3 code * scale"}
    return section
