"""FP8: the linear kernels against a dequantised reference, calibration input, quantisation of a model,
the FP8 KV cache, and the quality report."""
from __future__ import annotations

import types

import pytest
import torch

from compile.calibration_data import CALIBRATION_TEXTS, load_calibration_texts
from compile.eager_runs import sequence_logits
from compile.models.fp8_linear import FP8Linear, CpuKernel, decode_e4m3_words, get_kernel, quantize_weight
from compile.calibrate import calibrate
from compile.quantize import QuantConfig, fp8_linears, kv_scales, quantize_for_build, quantized, restore_quantized


def make_fp8(linear: torch.nn.Linear, target: str, dtype=torch.float32) -> FP8Linear:
    kernel = get_kernel(target)
    codes, scale = quantize_weight(linear.weight, kernel.fp8_max)
    fp8 = FP8Linear(linear.in_features, linear.out_features, linear.bias is not None, target, dtype=dtype)
    fp8.weight, fp8.weight_scale = kernel.pack(codes), scale
    if linear.bias is not None:
        fp8.bias.data = linear.bias.detach().to(dtype)
    return fp8


def reference(fp8: FP8Linear, x: torch.Tensor) -> torch.Tensor:
    bias = None if fp8.bias is None else fp8.bias.float()
    return torch.nn.functional.linear(x.float(), fp8.dequantized_weight(), bias)


def test_decoding_e4m3_words_is_exact_for_every_finite_code():
    codes = torch.arange(256, dtype=torch.uint8)
    words = codes.view(torch.float32)                                  # 64 words of 4 codes
    decoded = torch.stack([decode_e4m3_words(words, j) for j in range(4)], 1).flatten() * 2.0 ** 120
    expected = codes.view(torch.float8_e4m3fn).float()
    finite = ~expected.isnan()
    assert finite.sum() == 254                                         # 0x7f and 0xff are NaN: never produced
    assert torch.equal(decoded[finite], expected[finite])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows", [1, 3, 4, 5, 24])                     # GEMV up to 4 rows, dequant + GEMM above
def test_cpu_fp8_linear_matches_the_dequantized_weight(dtype, rows):
    torch.manual_seed(rows)
    fp8 = make_fp8(torch.nn.Linear(96, 40, bias=True), "cpu", dtype)
    x = torch.randn(rows, 96).to(dtype)
    y, ref = fp8(x), reference(fp8, x)
    assert y.dtype == dtype and y.shape == (rows, 40)
    # the GEMV rounds activations to bfloat16 (2**-8 relative), bf16 outputs round once more, and bf16
    # builds on CPUs with bf16 dot products multiply in bfloat16; float32 builds above 4 rows are exact
    tol = 1e-6 if dtype == torch.float32 and rows > 4 else 1e-2
    assert (y.float() - ref).abs().max() <= tol * ref.abs().max()


def test_eager_weight_multiplies_by_the_values_the_cpu_kernel_uses():
    torch.manual_seed(0)
    fp8 = make_fp8(torch.nn.Linear(64, 24, bias=True), "cpu")
    x = torch.randn(3, 8, 64)                                            # 24 rows: the dequant + GEMM path
    kernel_out = fp8(x)
    fp8.use_eager_weight(True)
    assert torch.allclose(fp8(x), kernel_out, atol=1e-5) and fp8.eager_weight.dtype == torch.float32
    fp8.use_eager_weight(False)
    assert fp8.eager_weight is None and "eager_weight" not in fp8.state_dict()


def test_cpu_layout_round_trips_and_quantization_error_is_small():
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 32, bias=False)
    codes, scale = quantize_weight(linear.weight)
    assert torch.equal(CpuKernel.unpack(CpuKernel.pack(codes)).view(torch.uint8), codes.view(torch.uint8))
    dequant = codes.float() * scale[:, None]
    # e4m3 keeps 3 mantissa bits: relative error within 2**-4 of each row's largest weight
    assert ((dequant - linear.weight).abs().amax(1) <= linear.weight.abs().amax(1) / 16).all()
    assert scale.shape == (32,) and (codes.float().abs().amax(1) == 448).all()


def test_cpu_kernel_rejects_widths_it_cannot_pack():
    with pytest.raises(ValueError, match="multiple of 4"):
        FP8Linear(30, 8, False, "cpu")


def test_cuda_kernel_arithmetic_through_scaled_mm_on_cpu():
    # torch._scaled_mm also runs on the CPU: the arithmetic is checked here, not the GPU
    torch.manual_seed(0)
    fp8 = make_fp8(torch.nn.Linear(64, 32, bias=False), "cuda", torch.bfloat16)
    x = torch.randn(5, 64).bfloat16()
    fp8.input_scale = x.float().abs().max() / 448
    x_dequant = (x.float() / fp8.input_scale).to(torch.float8_e4m3fn).float() * fp8.input_scale
    ref = reference(fp8, x_dequant)
    assert (fp8(x).float() - ref).abs().max() <= 1e-2 * ref.abs().max()


def fake_hpu_ops():
    """Habana's cast_to_fp8_v2 / fp8_gemm_v2 as their documentation describes them, on the CPU."""
    def cast_to_fp8_v2(x, scale, stochastic, is_amax, dtype):
        return (x.float() * scale).to(dtype), None

    def fp8_gemm_v2(a, trans_a, b, trans_b, d, out_dtype, a_scale_inv, b_scale_inv, bias, accumulate):
        a = a.float().t() if trans_a else a.float()
        b = b.float().t() if trans_b else b.float()
        return ((a @ b) * a_scale_inv * b_scale_inv).to(out_dtype)
    return types.SimpleNamespace(cast_to_fp8_v2=cast_to_fp8_v2, fp8_gemm_v2=fp8_gemm_v2)


def test_hpu_kernel_composes_habanas_ops_and_fails_clearly_without_them(monkeypatch):
    torch.manual_seed(0)
    fp8 = make_fp8(torch.nn.Linear(32, 16, bias=False), "hpu", torch.bfloat16)
    assert fp8.weight.float().abs().max() == 240                            # Gaudi2's e4m3 range
    x = torch.randn(3, 32).bfloat16()
    with pytest.raises(RuntimeError, match="fp8_gemm_v2"):
        fp8(x)
    monkeypatch.setattr(torch.ops, "hpu", fake_hpu_ops(), raising=False)
    fp8.input_scale = x.float().abs().max() / 240
    x_dequant = (x.float() / fp8.input_scale).to(torch.float8_e4m3fn).float() * fp8.input_scale
    ref = reference(fp8, x_dequant)
    assert (fp8(x).float() - ref).abs().max() <= 1e-2 * ref.abs().max()


@pytest.fixture(scope="module")
def tiny_model(tiny_checkpoint):
    from compile.models.loader import load_model
    from runtime.tokenizer import Tokenizer

    return load_model(tiny_checkpoint, "float32"), Tokenizer.from_dir(tiny_checkpoint)


def test_calibration_records_every_decoder_linear_and_kv_range(tiny_model):
    model, tokenizer = tiny_model
    stats = calibrate(model, [tokenizer.encode(t)[:64] for t in CALIBRATION_TEXTS[:3]])
    assert len(stats.input_amax) == 7 * model.config.num_hidden_layers
    assert all(v > 0 for v in stats.input_amax.values())
    assert len(stats.k_amax) == model.config.num_hidden_layers and min(stats.k_amax + stats.v_amax) > 0
    assert stats.num_samples == 3 and not any(isinstance(m, FP8Linear) for m in model.modules())


def test_fp8_kv_cache_stores_codes_and_keeps_the_logits(tiny_model):
    model, tokenizer = tiny_model
    ids = tokenizer.encode(CALIBRATION_TEXTS[0])[:40]
    stats = calibrate(model, [ids])
    reference_logits = sequence_logits(model, ids)
    with quantized(model, {}, kv_scales(stats, "cpu")):
        attn = model.model.layers[0].self_attn
        assert attn.k_scale is not None
        fp8_logits = sequence_logits(model, ids)
    assert model.model.layers[0].self_attn.k_scale is None                # swapped back
    kl = (reference_logits.softmax(-1) * (reference_logits.log_softmax(-1) - fp8_logits.log_softmax(-1))).sum(-1)
    assert kl.max() < 0.05 and not torch.equal(reference_logits, fp8_logits)


def test_fp8_model_restores_from_its_own_state_dict(tiny_model, tiny_checkpoint):
    from compile.models.loader import load_model

    model, tokenizer = tiny_model
    stats = calibrate(model, [tokenizer.encode(CALIBRATION_TEXTS[1])[:32]])
    ids = tokenizer.encode(CALIBRATION_TEXTS[2])[:24]
    with quantized(model, fp8_linears(model, stats, "cpu"), kv_scales(stats, "cpu")):
        state = {k: v.clone() for k, v in model.state_dict().items()}
        expected = sequence_logits(model, ids)
    fresh = load_model(tiny_checkpoint, "float32")
    restore_quantized(fresh, state, "cpu")
    assert sum(isinstance(m, FP8Linear) for m in fresh.modules()) == 7 * fresh.config.num_hidden_layers
    assert torch.allclose(sequence_logits(fresh, ids), expected)


def test_quantize_for_build_reports_quality_and_describes_the_scales(tiny_checkpoint):
    from compile.models.loader import load_model
    from runtime.tokenizer import Tokenizer

    model = load_model(tiny_checkpoint, "float32")
    config = QuantConfig(scheme="fp8", kv_cache_dtype="fp8", calib_samples=4)
    result = quantize_for_build(model, config, "cpu", Tokenizer.from_dir(tiny_checkpoint), 256)
    report = result.report
    assert 0 <= report["kl_mean"] <= report["kl_max"] < 1
    assert 0.5 < report["top1_agreement"] <= 1
    assert report["perplexity_reference"] > 1 and report["perplexity_fp8"] > 1
    assert len(report["greedy_match"]["per_prompt"]) == report["held_out_texts"] == 8
    assert report["reference_dtype"] == "float32" and report["kv_cache_dtype"] == "float8_e4m3fn"
    section = result.manifest
    assert section["scheme"] == "fp8" and len(section["weights"]["modules"]) == 14
    state = model.state_dict()
    for module in section["weights"]["modules"]:
        assert state[f"{module}.weight"].dtype == torch.float8_e4m3fn
        assert state[f"{module}.weight_scale"].shape == state[f"{module}.weight"].shape[:1]
        assert state[f"{module}.input_scale"].shape == ()
    assert state["model.layers.1.self_attn.v_scale"] > 0
    assert state["model.embed_tokens.weight"].dtype == torch.float32 and state["lm_head.weight"].dtype == torch.float32
    assert section["calibration"]["samples"] == 4


def test_calibration_texts_from_a_file(tmp_path):
    lines = tmp_path / "prompts.txt"
    lines.write_text("first prompt\n\nsecond prompt\nthird\n")
    assert load_calibration_texts(lines, 2) == ["first prompt", "second prompt"]
    jsonl = tmp_path / "data.jsonl"
    jsonl.write_text('{"text": "one"}\n{"text": "two", "id": 2}\n')
    assert load_calibration_texts(jsonl, 10) == ["one", "two"]
    assert len(load_calibration_texts(None, 1000)) == len(CALIBRATION_TEXTS) >= 24


@pytest.mark.parametrize("setup, match", [
    (lambda d: d / "missing.txt", "does not exist"),
    (lambda d: (d / "empty.txt").write_text("\n  \n") and d / "empty.txt", "is empty"),
    (lambda d: d, "not a regular file"),
    (lambda d: (d / "bin.txt").write_bytes(b"\xff\xfe\x00bad") and d / "bin.txt", "not UTF-8"),
    (lambda d: (d / "bad.jsonl").write_text('{"text": "ok"}\nnot json\n') and d / "bad.jsonl", "line 2 .* not JSON"),
    (lambda d: (d / "nofield.jsonl").write_text('{"prompt": "x"}\n') and d / "nofield.jsonl", '"text"'),
])
def test_bad_calibration_files_are_one_clear_error(tmp_path, setup, match):
    with pytest.raises(ValueError, match=match) as err:
        load_calibration_texts(setup(tmp_path), 8)
    assert "--calib-data" in str(err.value)


def test_quant_config_validation():
    with pytest.raises(ValueError, match="unknown"):
        QuantConfig(scheme="int4")
    with pytest.raises(ValueError, match="calib_samples"):
        QuantConfig(scheme="fp8", calib_samples=0)
    with pytest.raises(ValueError, match="only used by"):
        QuantConfig(calib_data="x.txt")
    assert not QuantConfig().is_enabled and QuantConfig(kv_cache_dtype="fp8").is_enabled


def test_fp8_embeddings_untie_the_lm_head_and_round_trip(tmp_path):
    from compile.models.fp8_linear import FP8Embedding
    from compile.models.loader import load_model
    from compile.quantize import fp8_embedding, swap_modules
    from tests.factory import make_checkpoint

    checkpoint = make_checkpoint(tmp_path / "tied", "llama3.2", max_position_embeddings=64, with_tokenizer=False)
    model = load_model(checkpoint, "bfloat16")
    table = model.model.embed_tokens.weight.detach().clone()
    swap_modules(model, {"model.embed_tokens": fp8_embedding(model, "cpu")})
    ids = torch.tensor([[3, 17, 250]])
    rows = model.model.embed_tokens(ids)
    assert rows.dtype == torch.bfloat16 and (rows[0].float() - table[ids[0]].float()).abs().max() <= \
        table[ids[0]].float().abs().amax() / 16
    state = model.state_dict()
    assert state["model.embed_tokens.weight"].dtype == torch.float8_e4m3fn
    assert torch.equal(state["lm_head.weight"], table)                      # the LM head keeps its bf16 copy
    fresh = load_model(checkpoint, "bfloat16")
    restore_quantized(fresh, state, "cpu")
    assert isinstance(fresh.model.embed_tokens, FP8Embedding) and torch.equal(fresh.model.embed_tokens(ids), rows)
    with pytest.raises(ValueError, match="--fp8-embeddings needs --quant fp8"):
        QuantConfig(quantize_embeddings=True)


@pytest.mark.parametrize("bf16_dot, amx, activations, expected", [
    (True, False, torch.bfloat16, torch.bfloat16), (False, True, torch.bfloat16, torch.bfloat16),
    (False, False, torch.bfloat16, torch.float32), (True, True, torch.float32, torch.float32)])
def test_cpu_gemm_dtype_follows_the_cpu_and_the_build_dtype(monkeypatch, bf16_dot, amx, activations, expected):
    from compile.models.fp8_linear import gemm_dtype_for_this_cpu

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: bf16_dot)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert gemm_dtype_for_this_cpu(activations) == expected
