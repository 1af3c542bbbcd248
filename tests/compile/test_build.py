"""The compile stage end to end: every bucket's graph against the eager model, padding and splitting,
greedy generation from an artifact, incremental rebuilds and the runtime's import boundary."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch

import runtime
from compile.build import BuildOptions, build
from compile.models.loader import load_model
from runtime import SamplingParams
from runtime.artifact import read_manifest
from runtime.artifact_loader import CompiledExecutor
from runtime.model_inputs import StepRow, build_model_inputs
from runtime.runner import EagerExecutor, Launch, ModelRunner
from tests.conftest import TINY_ARTIFACT_BUCKETS

BLOCK_SIZE = 16
BLOCKS_PER_ROW = 16   # each row owns a full context's worth of blocks: max_model_len 256 / 16


@pytest.fixture(scope="module")
def compiled(tiny_artifact) -> CompiledExecutor:
    return runtime.load(tiny_artifact).runner.executor


@pytest.fixture(scope="module")
def eager(tiny_checkpoint) -> EagerExecutor:
    return EagerExecutor(load_model(tiny_checkpoint, "float32"), BLOCK_SIZE)


def random_kv_cache(num_rows: int, seed: int = 0) -> torch.Tensor:
    """A cache full of random "earlier" K/V, so attention over existing context is exercised."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 2, 1 + num_rows * BLOCKS_PER_ROW, BLOCK_SIZE, 2, 16, generator=g)  # [L, 2, NB, BS, Hkv, D]


def rows_for(kind: str, batch: int, query_len: int, seed: int) -> list[StepRow]:
    """`batch` rows with some cached context each: full prompt chunks for prefill, one token for decode."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(batch):
        num_tokens = query_len if kind == "decode" or i == 0 else query_len // 2 + i
        start = int(torch.randint(0, 200, (1,), generator=g))
        tokens = torch.randint(3, 700, (num_tokens,), generator=g).tolist()
        table = list(range(1 + i * BLOCKS_PER_ROW, 1 + i * BLOCKS_PER_ROW + -(-(start + num_tokens) // BLOCK_SIZE)))
        rows.append(StepRow(tokens, start, table))
    return rows


def test_every_bucket_graph_matches_the_eager_model(tiny_artifact, compiled, eager):
    manifest = read_manifest(tiny_artifact)
    assert len(manifest.buckets) == 4
    for entry in manifest.buckets:
        bucket = entry.bucket
        rows = rows_for(bucket.kind, bucket.batch, bucket.query_len, seed=bucket.batch)
        inputs = build_model_inputs(rows, BLOCK_SIZE, *bucket.shape)
        before = random_kv_cache(bucket.batch)
        kv_graph, kv_eager = before.clone(), before.clone()
        launch = Launch(list(range(len(rows))), rows, bucket.shape, bucket.name)
        with torch.inference_mode():
            hidden = compiled.forward(inputs, launch, kv_graph)
            expected = eager.forward(inputs, launch, kv_eager)
        assert hidden.shape == (bucket.batch, bucket.query_len, 64)
        torch.testing.assert_close(hidden, expected, atol=1e-4, rtol=1e-4, msg=bucket.name)
        # the graph writes the same slots (and only those) with the same values
        written = (kv_graph != before).flatten(3).any(-1)
        assert torch.equal(written, (kv_eager != before).flatten(3).any(-1)), bucket.name
        assert written.any()
        torch.testing.assert_close(kv_graph, kv_eager, atol=1e-5, rtol=1e-5, msg=bucket.name)


def test_padded_split_and_chunked_steps_match_eager(compiled, eager):
    kv_graph = random_kv_cache(5, seed=1)
    kv_eager = kv_graph.clone()
    graph_runner, eager_runner = ModelRunner(compiled, kv_graph), ModelRunner(eager, kv_eager)
    prompts = [list(range(3, 73)), list(range(5, 10)), list(range(9, 29))]          # 70, 5 and 20 tokens
    tables = [list(range(1 + i * BLOCKS_PER_ROW, 1 + i * BLOCKS_PER_ROW + 5)) for i in range(5)]
    prefill = [StepRow(p, 0, tables[i]) for i, p in enumerate(prompts)]
    steps = [(prefill, True),
             ([StepRow([7], len(p), tables[i]) for i, p in enumerate(prompts)], False),    # 3 rows: padded to 4
             ([StepRow([8], 30 + i, tables[i]) for i in range(5)], False)]                 # 5 rows: split 4 + 1
    for rows, is_prefill in steps:
        got = graph_runner.execute(rows, is_prefill).logits
        want = eager_runner.execute(rows, is_prefill).logits
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
        assert torch.equal(got.argmax(-1), want.argmax(-1))
    # block 0 is the null block: padding writes there, and eager steps have no padding
    torch.testing.assert_close(kv_graph[:, :, 1:], kv_eager[:, :, 1:], atol=1e-5, rtol=1e-5)
    runs = graph_runner.stats.runs
    # the 70-token prompt ran as 32 + 32 + 6 tokens; 3 decode rows padded into batch 4; 5 split into 4 + 1
    assert runs == {"prefill_b2_q32_m16": 1, "prefill_b1_q32_m16": 3, "decode_b4_m16": 2, "decode_b1_m16": 1}
    assert graph_runner.stats.padded_tokens["decode_b4_m16"] == 1


def words(n: int) -> list[str]:
    vocab = "the model of a cat runs over hello world data tokens fast slow code blue sky".split()
    return [" ".join(vocab[(i * 7 + j) % len(vocab)] for j in range(1 + 9 * i)) for i in range(n)]


def test_greedy_generation_from_the_artifact_equals_eager(tiny_artifact, tiny_checkpoint):
    engine = runtime.load(tiny_artifact)
    reference = runtime.load(tiny_checkpoint, dtype="float32", max_model_len=256, enforce_eager=True)
    prompts = words(6)    # 1 to 46 words: some prompts exceed the largest prefill bucket
    params = SamplingParams(temperature=0, max_tokens=24, ignore_eos=True)
    got = [o.outputs[0].token_ids for o in engine.generate(prompts, params)]
    assert got == [o.outputs[0].token_ids for o in reference.generate(prompts, params)]
    assert max(len(o.prompt_token_ids) for o in engine.generate(prompts[-1:], params)) > 32


def test_llm_on_a_checkpoint_builds_once_into_the_cache(tiny_artifact, tiny_checkpoint, tmp_path, monkeypatch):
    import compile.build_cache as cache
    from runtime.config import EngineOptions

    real = cache.build_options_for
    monkeypatch.setattr(cache, "build_options_for",
                        lambda model_dir, options, out_dir=None: BuildOptions(
                            **{**real(model_dir, options, out_dir).__dict__, **TINY_ARTIFACT_BUCKETS}))
    builds = []
    monkeypatch.setattr(cache, "build", lambda *a, **k: builds.append(build(*a, **k)))
    options = EngineOptions(dtype="float32", max_model_len=256, compile_cache_dir=str(tmp_path))
    out = cache.cache_dir_for(tiny_checkpoint, options)
    shutil.copytree(tiny_artifact, out)      # seeded with this build's graphs: the build below reuses them
    (out / "weights.safetensors").write_bytes(b"damaged")
    llm = runtime.LLM(model=str(tiny_checkpoint), dtype="float32", max_model_len=256, compile_cache_dir=str(tmp_path))
    assert isinstance(llm.llm_engine.runner.executor, CompiledExecutor)
    assert [b.report["num_compiled"] for b in builds] == [0]
    again = runtime.LLM(model=str(tiny_checkpoint), dtype="float32", max_model_len=256,
                        compile_cache_dir=str(tmp_path))
    assert len(builds) == 1
    params = SamplingParams(temperature=0, max_tokens=8)
    assert llm.generate("hello world", params)[0].outputs[0].token_ids == \
        again.generate("hello world", params)[0].outputs[0].token_ids


def test_second_build_compiles_nothing_and_drops_removed_buckets(tiny_artifact, tiny_checkpoint, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(tiny_artifact, out)
    options = BuildOptions(model_dir=tiny_checkpoint, out_dir=out, dtype="float32", max_model_len=256,
                           **TINY_ARTIFACT_BUCKETS)
    again = build(options, progress=False)
    assert (again.report["num_compiled"], again.report["num_reused"]) == (0, 4)
    assert json.loads((out / "report.json").read_text())["num_compiled"] == 0
    fewer = build(BuildOptions(**{**options.__dict__, "decode_buckets": (4,)}), progress=False)
    assert fewer.report["num_compiled"] == 0
    assert sorted(p.name for p in (out / "graphs").iterdir()) == \
        ["decode_b4_m16.pt2", "prefill_b1_q32_m16.pt2", "prefill_b2_q32_m16.pt2"]
    assert runtime.load(out).generate("hi", SamplingParams(max_tokens=2))[0].finished


def test_graphs_carry_no_weights(tiny_artifact, compiled):
    """The graph computes with whatever weights it is bound to: nothing is baked in, one copy serves all."""
    from runtime.graphs import get_backend

    entry = read_manifest(tiny_artifact).buckets[0]
    graph = get_backend("cpu").load(tiny_artifact / entry.file)
    names = graph.constant_fqns()
    assert "model.embed_tokens.weight" in names and "lm_head.weight" not in names
    halved = {n: compiled.weights[n] * (0.5 if n == "model.norm.weight" else 1.0) for n in names}
    graph.bind(halved)
    rows = rows_for(entry.kind, entry.batch, entry.query_len, seed=3)
    inputs = build_model_inputs(rows, BLOCK_SIZE, *entry.bucket.shape)
    args = [inputs.input_ids, inputs.positions, random_kv_cache(entry.batch), inputs.md.slot_mapping,
            inputs.md.block_tables, inputs.md.seq_lens]
    launch = Launch(list(range(len(rows))), rows, entry.bucket.shape, entry.bucket.name)
    full = compiled.forward(inputs, launch, args[2].clone())
    torch.testing.assert_close(graph.run(args)[0], full * 0.5)


def test_serving_an_artifact_imports_neither_compile_nor_transformers(tiny_artifact):
    code = (
        "import sys, runtime\n"
        f"engine = runtime.load({str(tiny_artifact)!r})\n"
        "out = engine.generate(['hello world'], runtime.SamplingParams(max_tokens=4, temperature=0))\n"
        "assert len(out[0].outputs[0].token_ids) == 4\n"
        "banned = ('compile', 'transformers', 'torch._inductor')\n"
        "print([m for m in sys.modules if any(m == b or m.startswith(b + '.') for b in banned)])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
