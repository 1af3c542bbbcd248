"""Shared fixtures: one tiny checkpoint (and later one built artifact) per test session."""
from __future__ import annotations

import pytest

from tests.factory import make_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A tiny random Llama-3-style checkpoint with a real BPE tokenizer and chat template."""
    return make_checkpoint(tmp_path_factory.mktemp("tiny-llama3"), "llama3", max_position_embeddings=256)
