"""The hpu target's build side, against a fake habana_frameworks (tests/fakes): no Gaudi is needed.

What a user would notice: a clear error without Habana's stack, FusedSDPA attention that computes
what sdpa computes, a fingerprint naming the Gaudi generation and software, and graph files that
carry no weights while the artifact gains a warmed recipe cache.
"""
from __future__ import annotations

import inspect
import sys

import pytest
import torch

import runtime

import compile.models.attention_hpu  # noqa: F401  (registers "fused_sdpa")
from compile.models.attention import get_backend, sdpa_paged_attention
from compile.build import BuildOptions, build
from compile.build_plan import plan_build
from compile.models.loader import load_model
from compile.targets import GraphJob, get_target
from compile.trace import export_bucket
from runtime.attention_metadata import AttentionMetadata
from runtime.buckets import Bucket
from runtime.graphs.hpu import load_program
from runtime.sampling_params import SamplingParams
from tests.factory import make_checkpoint
from tests.fake_habana import fake_habana, purge_habana  # noqa: F401  (fixture)

BLOCK_SIZE = 4


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    # weights well above the size of a graph, so a graph that carried them would show
    return make_checkpoint(tmp_path_factory.mktemp("hpu-ckpt"), "llama3", hidden_size=64, intermediate_size=1024,
                           with_tokenizer=False)


def paged_case(num_heads: int, num_kv_heads: int, head_dim: int = 8, seed: int = 0):
    """Two sequences mid-prefill over a cache that already holds their earlier tokens, plus a padded row.

    Row 0: positions 5..7 in blocks [1, 2]; row 1: positions 2..4 in blocks [3, 4]; row 2: padding
    (positions 0, slots 0, block table zeros).
    """
    g = torch.Generator().manual_seed(seed)
    batch, q_len, num_blocks = 3, 3, 8
    q = torch.randn(batch, q_len, num_heads, head_dim, generator=g)
    k = torch.randn(batch, q_len, num_kv_heads, head_dim, generator=g)
    v = torch.randn(batch, q_len, num_kv_heads, head_dim, generator=g)
    kv_cache = torch.randn(1, 2, num_blocks, BLOCK_SIZE, num_kv_heads, head_dim, generator=g)
    kv_cache[:, :, 0] = 0
    positions = torch.tensor([[5, 6, 7], [2, 3, 4], [0, 0, 0]])
    block_tables = torch.tensor([[1, 2], [3, 4], [0, 0]])
    slots = torch.tensor([[1 * 4 + 1, 1 * 4 + 2, 1 * 4 + 3], [3 * 4 + 2, 3 * 4 + 3, 4 * 4 + 0], [0, 0, 0]])
    md = AttentionMetadata(slots, block_tables, torch.tensor([8, 5, 1]))
    return q, k, v, kv_cache, positions, md


def test_hpu_target_without_habana_is_one_clear_sentence():
    purge_habana()
    with pytest.raises(ValueError, match="--target hpu needs Intel Gaudi's habana_frameworks.*--target cpu"):
        get_target("hpu").check_available()


def test_hpu_target_without_a_gaudi_device_says_so(fake_habana, monkeypatch):
    monkeypatch.setenv("FAKE_HPU_AVAILABLE", "0")
    with pytest.raises(ValueError, match="no Gaudi device"):
        get_target("hpu").check_available()


@pytest.mark.parametrize("num_heads,num_kv_heads,window", [(4, 4, None), (4, 2, None), (4, 1, None), (4, 2, 3)])
def test_fused_sdpa_matches_sdpa(fake_habana, num_heads, num_kv_heads, window):
    q, k, v, kv_cache, positions, md = paged_case(num_heads, num_kv_heads)
    fused_cache, sdpa_cache = kv_cache.clone(), kv_cache.clone()
    fused = get_backend("fused_sdpa")(q, k, v, fused_cache, 0, positions, md, 0.3, window)
    expected = sdpa_paged_attention(q, k, v, sdpa_cache, 0, positions, md, 0.3, window)
    torch.testing.assert_close(fused, expected)
    torch.testing.assert_close(fused_cache, sdpa_cache)      # the same K/V written to the same slots
    (call,) = fake_habana.named("FusedSDPA")
    _, q_shape, k_shape, mask_dtype, softmax_mode, recompute = call
    assert (q_shape, k_shape) == ((3, num_heads, 3, 8), (3, num_kv_heads, 2 * BLOCK_SIZE, 8))
    assert (mask_dtype, softmax_mode, recompute) == (torch.float32, "None", True)


def test_fused_sdpa_matches_sdpa_over_an_fp8_cache(fake_habana):
    q, k, v, kv_cache, positions, md = paged_case(4, 2)
    fp8_cache = (kv_cache / 0.05).to(torch.float8_e4m3fn)
    scales = {"k_scale": torch.tensor(0.05), "v_scale": torch.tensor(0.04)}
    fused_cache, sdpa_cache = fp8_cache.clone(), fp8_cache.clone()
    fused = get_backend("fused_sdpa")(q, k, v, fused_cache, 0, positions, md, 0.3, None, **scales)
    expected = sdpa_paged_attention(q, k, v, sdpa_cache, 0, positions, md, 0.3, None, **scales)
    torch.testing.assert_close(fused, expected)
    assert torch.equal(fused_cache.view(torch.uint8), sdpa_cache.view(torch.uint8))   # same e4m3 codes written


def test_model_with_fused_sdpa_matches_sdpa(fake_habana, checkpoint):
    sdpa_model, fused_model = load_model(checkpoint), load_model(checkpoint, attention_backend="fused_sdpa")
    cfg = sdpa_model.config
    input_ids = torch.randint(0, cfg.vocab_size, (2, 5))
    positions = torch.arange(5).repeat(2, 1)
    md = AttentionMetadata(torch.arange(4, 14).view(2, 5), torch.tensor([[1, 2], [3, 4]]), torch.tensor([5, 5]))
    caches = [torch.zeros(cfg.num_hidden_layers, 2, 6, BLOCK_SIZE, cfg.num_key_value_heads, cfg.head_dim)
              for _ in range(2)]
    torch.testing.assert_close(fused_model(input_ids, positions, caches[0], md),
                               sdpa_model(input_ids, positions, caches[1], md))
    assert len(fake_habana.named("FusedSDPA")) == cfg.num_hidden_layers


def test_fingerprint_names_gaudi_generation_and_software(fake_habana, monkeypatch):
    monkeypatch.setenv("FAKE_GAUDI_GENERATION", "GAUDI3")
    fingerprint = get_target("hpu").fingerprint()
    assert fingerprint["gaudi_generation"] == "GAUDI3"
    assert fingerprint["software_version"] == "1.21.0.fake"
    assert fingerprint["torch_version"] == torch.__version__


def test_graph_file_carries_no_weights(fake_habana, checkpoint, tmp_path):
    target = get_target("hpu")
    target.check_available()
    model = load_model(checkpoint, attention_backend=target.attention_backend)
    bucket = Bucket("prefill", 2, 8, 4)
    out = tmp_path / "artifact" / "graphs" / f"{bucket.name}.pt2"
    out.parent.mkdir(parents=True)
    target.compile_graph(GraphJob(export_bucket(model, bucket, BLOCK_SIZE, target.device), bucket, out))

    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    assert out.stat().st_size < weight_bytes / 4
    loaded = load_program(out)
    assert set(loaded.state_dict) >= {n for n, _ in model.named_parameters()} - {"lm_head.weight"}
    assert all(t.device.type == "meta" for t in loaded.state_dict.values())


def test_build_warms_the_recipes_a_fresh_runtime_reuses(fake_habana, tiny_checkpoint, tmp_path):
    out = tmp_path / "artifact"
    result = build(BuildOptions(model_dir=tiny_checkpoint, out_dir=out, target="hpu", max_model_len=32, max_num_seqs=1,
                                max_num_batched_tokens=16, block_size=16), progress=False)
    assert result.manifest.fingerprint["gaudi_generation"] == "GAUDI2"
    # one recipe per bucket, left in the artifact by the build's warm-up process
    assert len(list((out / "recipe_cache").glob("*.recipe"))) == len(result.manifest.buckets)

    purge_habana()   # a fresh serving process: Habana's stack starts again, with the artifact's cache
    prompts = ["hello world", "the cat sat"]
    greedy = SamplingParams(max_tokens=6, temperature=0)
    compiled = [o.outputs[0].token_ids for o in runtime.load(out).generate(prompts, greedy)]
    compiles = fake_habana.named("compile")
    assert compiles and all(status == "hit" for _, _, status in compiles)
    assert sys.modules["habana_frameworks.torch"].recipe_cache_config_at_start.startswith(
        str((out / "recipe_cache").resolve()))
    eager = runtime.load(tiny_checkpoint, enforce_eager=True)
    assert compiled == [o.outputs[0].token_ids for o in eager.generate(prompts, greedy)]


def test_graph_keys_follow_the_fused_sdpa_source(fake_habana, tiny_checkpoint, monkeypatch):
    options = BuildOptions(model_dir=tiny_checkpoint, target="hpu", max_model_len=32, max_num_seqs=1,
                           max_num_batched_tokens=16)
    before = plan_build(options).keys
    getsource = inspect.getsource
    monkeypatch.setattr(inspect, "getsource", lambda module: getsource(module) + (
        "# edited" if module.__name__ == "compile.models.attention_hpu" else ""))
    assert set(before.values()).isdisjoint(plan_build(options).keys.values())   # every graph rebuilds
