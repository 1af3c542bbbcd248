"""Calibration: run the eager model over calibration text and record the ranges FP8 scales come from.

    stats = calibrate(model, [tokenizer.encode(text) for text in texts])
    stats.input_amax["model.layers.0.mlp.down_proj"]   # max |input| of that linear
    stats.k_amax[0], stats.v_amax[0]                    # max |K|, |V| layer 0 writes to its cache

Inputs are recorded by forward pre-hooks on every decoder nn.Linear; K and V by wrapping each
layer's attention backend for the duration of the runs. The model is left as it was.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from compile.eager_runs import sequence_hidden
from compile.models.llama import LlamaForCausalLM


@dataclass
class CalibrationStats:
    input_amax: dict[str, float] = field(default_factory=dict)   # decoder linear name -> max |input|
    k_amax: list[float] = field(default_factory=list)            # per layer: max |K| written to the cache
    v_amax: list[float] = field(default_factory=list)
    num_samples: int = 0
    num_tokens: int = 0


def decoder_linears(model: LlamaForCausalLM) -> dict[str, nn.Linear]:
    """Every nn.Linear inside the decoder layers, by FQN (the LM head is outside them)."""
    return {f"model.layers.{name}": module for name, module in model.model.layers.named_modules()
            if isinstance(module, nn.Linear)}


@torch.no_grad()
def calibrate(model: LlamaForCausalLM, sequences: list[list[int]]) -> CalibrationStats:
    """Run the eager model over token sequences, recording activation, K and V ranges."""
    stats = CalibrationStats()
    num_layers = len(model.model.layers)
    stats.k_amax, stats.v_amax = [0.0] * num_layers, [0.0] * num_layers

    def record_input(name):
        def hook(module, args):
            stats.input_amax[name] = max(stats.input_amax.get(name, 0.0), float(args[0].abs().max()))
        return hook

    def record_kv(attn, backend):
        def attend(q, k, v, *args, **kwargs):
            stats.k_amax[attn.layer_idx] = max(stats.k_amax[attn.layer_idx], float(k.abs().max()))
            stats.v_amax[attn.layer_idx] = max(stats.v_amax[attn.layer_idx], float(v.abs().max()))
            return backend(q, k, v, *args, **kwargs)
        return attend

    hooks = [m.register_forward_pre_hook(record_input(n)) for n, m in decoder_linears(model).items()]
    attns = [layer.self_attn for layer in model.model.layers]
    backends = [attn.attend for attn in attns]
    for attn, backend in zip(attns, backends):
        attn.attend = record_kv(attn, backend)
    try:
        for ids in sequences:
            sequence_hidden(model, ids)
            stats.num_samples += 1
            stats.num_tokens += len(ids)
    finally:
        for hook in hooks:
            hook.remove()
        for attn, backend in zip(attns, backends):
            attn.attend = backend
    return stats
