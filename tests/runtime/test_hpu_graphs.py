"""The hpu graph backend against a fake habana_frameworks (tests/fakes): no Gaudi is needed.

A graph built by the hpu target is loaded, bound to weights read from a safetensors file and run;
it must give the eager model's hidden states and K/V, point Habana's recipe cache inside the
artifact before the stack starts, and refuse artifacts built for another Gaudi.
"""
from __future__ import annotations

import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from compile.models.loader import load_model
from compile.targets import GraphJob, get_target
from compile.trace import export_bucket
from runtime.attention_metadata import AttentionMetadata
from runtime.buckets import Bucket
from runtime.graphs import get_backend
from runtime.graphs.hpu import RECIPE_CACHE_ENV
from tests.factory import make_checkpoint
from tests.fake_habana import fake_habana, purge_habana  # noqa: F401  (fixture)

BLOCK_SIZE = 4
BUCKET = Bucket("prefill", 2, 4, 3)   # batch 2, 4 new tokens, block tables of 3 blocks


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("hpu-graphs"), "llama3", with_tokenizer=False)


@pytest.fixture
def artifact(fake_habana, checkpoint, tmp_path):
    """An artifact directory holding one hpu graph and a weights file; returns (dir, graph file, fingerprint)."""
    target = get_target("hpu")
    model = load_model(checkpoint, attention_backend=target.attention_backend)
    (tmp_path / "graphs").mkdir()
    graph = tmp_path / "graphs" / f"{BUCKET.name}.pt2"
    target.compile_graph(GraphJob(export_bucket(model, BUCKET, BLOCK_SIZE, target.device), BUCKET, graph))
    save_file({n: t.contiguous() for n, t in model.state_dict().items()}, str(tmp_path / "weights.safetensors"))
    fingerprint = target.fingerprint()
    purge_habana()   # as in a fresh serving process: Habana's stack has not started yet
    return tmp_path, graph, fingerprint


def step_inputs(vocab_size: int, num_kv_blocks: int, cfg) -> list[torch.Tensor]:
    """Row 0: a 4-token prompt in block 1; row 1: tokens 4..7 of a sequence whose first 4 are cached in block 2."""
    g = torch.Generator().manual_seed(0)
    kv_cache = torch.zeros(cfg.num_hidden_layers, 2, num_kv_blocks, BLOCK_SIZE, cfg.num_key_value_heads, cfg.head_dim)
    kv_cache[:, :, 2] = torch.randn(kv_cache[:, :, 2].shape, generator=g)
    return [torch.randint(0, vocab_size, (2, 4), generator=g), torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]]), kv_cache,
            torch.tensor([[4, 5, 6, 7], [12, 13, 14, 15]]), torch.tensor([[1, 0, 0], [2, 3, 0]]), torch.tensor([4, 8])]


def load_and_bind(artifact_dir, graph_file, fingerprint):
    backend = get_backend("hpu")
    backend.prepare(artifact_dir)
    backend.check_fingerprint(fingerprint)
    weights = load_file(str(artifact_dir / "weights.safetensors"))
    graph = backend.load(graph_file)
    graph.bind({name: weights[name] for name in graph.constant_fqns()})
    return backend, graph, weights


def test_graph_gives_the_eager_models_hidden_states(artifact, checkpoint, fake_habana):
    artifact_dir, graph_file, fingerprint = artifact
    backend, graph, weights = load_and_bind(artifact_dir, graph_file, fingerprint)
    eager = load_model(checkpoint)
    inputs = step_inputs(eager.config.vocab_size, 6, eager.config)
    eager_kv = inputs[2].clone()

    (hidden,) = graph.run(inputs)
    expected = eager(inputs[0], inputs[1], eager_kv, AttentionMetadata(*inputs[3:]))
    torch.testing.assert_close(hidden, expected)
    torch.testing.assert_close(inputs[2], eager_kv)           # the graph wrote the same K/V in place
    assert [c[0] for c in fake_habana.calls].count("compile") == 1   # torch.compile(backend="hpu_backend")
    # bound by assignment: the graph's parameters are the weights file's tensors, not copies
    params = dict(graph.program.state_dict)
    assert params["model.embed_tokens.weight"].data_ptr() == weights["model.embed_tokens.weight"].data_ptr()


def test_recipe_cache_points_inside_the_artifact_before_habana_starts(artifact, fake_habana):
    artifact_dir, graph_file, fingerprint = artifact
    load_and_bind(artifact_dir, graph_file, fingerprint)
    import os

    expected = f"{(artifact_dir / 'recipe_cache').resolve()},false,16384"
    assert os.environ[RECIPE_CACHE_ENV] == expected
    assert sys.modules["habana_frameworks.torch"].recipe_cache_config_at_start == expected
    assert (artifact_dir / "recipe_cache").is_dir()


def test_two_graphs_share_one_device_copy_of_each_weight(artifact, fake_habana):
    artifact_dir, graph_file, fingerprint = artifact
    backend, first, weights = load_and_bind(artifact_dir, graph_file, fingerprint)
    second = backend.load(graph_file)
    second.bind({name: weights[name] for name in second.constant_fqns()})
    name = "model.layers.0.mlp.up_proj.weight"
    assert first.program.state_dict[name].data_ptr() == second.program.state_dict[name].data_ptr()


def test_lazy_mode_runs_through_hpu_graphs_and_mark_step(artifact, checkpoint, fake_habana, monkeypatch):
    monkeypatch.setenv("PT_HPU_LAZY_MODE", "1")
    artifact_dir, graph_file, fingerprint = artifact
    _, graph, _ = load_and_bind(artifact_dir, graph_file, fingerprint)
    cfg = load_model(checkpoint).config
    graph.run(step_inputs(cfg.vocab_size, 6, cfg))
    names = [c[0] for c in fake_habana.calls]
    assert "wrap_in_hpu_graph" in names and names[-1] == "mark_step" and "compile" not in names


@pytest.mark.parametrize("key,value,message", [
    ("gaudi_generation", "GAUDI3", "built for GAUDI3 but this machine's accelerator is GAUDI2; rebuild it here"),
    ("software_version", "1.19.0", "built with Gaudi software 1.19.0 but this machine runs 1.21.0.fake; rebuild"),
])
def test_fingerprint_of_another_gaudi_is_a_clear_error(artifact, fake_habana, key, value, message):
    _, _, fingerprint = artifact
    with pytest.raises(ValueError, match=message):
        get_backend("hpu").check_fingerprint({**fingerprint, key: value})


def test_no_gaudi_device_is_a_clear_error(artifact, fake_habana, monkeypatch):
    monkeypatch.setenv("FAKE_HPU_AVAILABLE", "0")
    with pytest.raises(ValueError, match="no Gaudi device is visible here"):
        get_backend("hpu").check_fingerprint(artifact[2])


def test_without_habana_the_hpu_runtime_says_what_to_do(artifact, monkeypatch):
    purge_habana()
    monkeypatch.setattr(sys, "path", [p for p in sys.path if not p.endswith("fakes")])
    with pytest.raises(ValueError, match="needs Intel Gaudi's habana_frameworks.*rebuild it with --target cpu"):
        get_backend("hpu").check_fingerprint(artifact[2])


def test_unbound_or_mismatched_weights_are_refused(artifact, fake_habana):
    artifact_dir, graph_file, fingerprint = artifact
    backend = get_backend("hpu")
    backend.prepare(artifact_dir)
    graph = backend.load(graph_file)
    with pytest.raises(RuntimeError, match="before its weights were bound"):
        graph.run([])
    weights = load_file(str(artifact_dir / "weights.safetensors"))
    given = {name: weights[name] for name in graph.constant_fqns()}
    with pytest.raises(ValueError, match="needs weights model.norm.weight"):
        graph.bind({n: t for n, t in given.items() if n != "model.norm.weight"})
    with pytest.raises(ValueError, match="model.norm.weight is .* but graph .* was built for"):
        graph.bind({**given, "model.norm.weight": given["model.norm.weight"].to(torch.bfloat16)})
