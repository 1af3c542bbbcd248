"""Shared fixtures: one tiny checkpoint and one artifact built from it, per test session."""
from __future__ import annotations

import pytest

from tests.factory import make_checkpoint

# the tiny artifact's buckets: as few graphs as the tests need (each costs ~20 s to compile on 2 cores).
# Prefill batch 1 and 2 of 32 tokens, decode batch 1 and 4, all over the full context (256 tokens = 16 blocks):
# a decode step of 2 or 3 rows pads to batch 4, 5 rows split into 4 + 1, a 70-token prompt runs as 3 chunks.
TINY_ARTIFACT_BUCKETS = dict(prefill_buckets=((1, 32), (2, 32)), decode_buckets=(1, 4), context_blocks=(16,))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A tiny random Llama-3-style checkpoint with a real BPE tokenizer and chat template."""
    return make_checkpoint(tmp_path_factory.mktemp("tiny-llama3"), "llama3", max_position_embeddings=256)


@pytest.fixture(scope="session")
def tiny_artifact(tiny_checkpoint, tmp_path_factory):
    """tiny_checkpoint built once per session for the cpu target in float32 (max_model_len 256, block size 16)."""
    from compile.build import BuildOptions, build

    out = tmp_path_factory.mktemp("artifacts") / "tiny-llama3-cpu-float32"
    build(BuildOptions(model_dir=tiny_checkpoint, out_dir=out, dtype="float32", max_model_len=256,
                       **TINY_ARTIFACT_BUCKETS), progress=False)
    return out
