"""Our Llama-family model against transformers on the same tiny checkpoints (the oracle)."""
from __future__ import annotations

import pytest
import torch

from compile.models.config import ModelConfig
from compile.models.llama import kv_cache_shape
from compile.models.loader import load_model
from runtime.model_inputs import StepRow, build_model_inputs
from tests.factory import FAMILIES, make_checkpoint

BLOCK_SIZE = 4
PROMPT_LENS = (5, 11, 3, 17)
NEW_TOKENS = 32


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def checkpoint(request, tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp(request.param), request.param, with_tokenizer=False)


def prompts(vocab_size: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(1)
    return [torch.randint(3, vocab_size, (n,), generator=g).tolist() for n in PROMPT_LENS]


class PagedGreedy:
    """Greedy generation straight on the model: contiguous block ranges per sequence, no scheduler."""

    def __init__(self, model, max_len: int = 64):
        cfg = model.config
        self.model, self.blocks_per_seq = model, -(-max_len // BLOCK_SIZE)
        self.kv = torch.zeros(kv_cache_shape(cfg, 1 + 8 * self.blocks_per_seq, BLOCK_SIZE))

    def table(self, i: int, num_tokens: int) -> list[int]:
        first = 1 + i * self.blocks_per_seq   # block 0 is the null block
        return list(range(first, first + -(-num_tokens // BLOCK_SIZE)))

    def step(self, rows: list[StepRow]) -> torch.Tensor:
        inputs = build_model_inputs(rows, BLOCK_SIZE)
        with torch.no_grad():
            hidden = self.model(*inputs.as_args(self.kv))
            return self.model.compute_logits(hidden.flatten(0, 1)[inputs.last_indices])

    def generate(self, token_lists: list[list[int]], new_tokens: int) -> tuple[list[list[int]], torch.Tensor]:
        rows = [StepRow(t, 0, self.table(i, len(t))) for i, t in enumerate(token_lists)]
        logits = self.step(rows)
        first_logits = logits
        seqs = [list(t) for t in token_lists]
        out: list[list[int]] = [[] for _ in token_lists]
        for _ in range(new_tokens):
            nxt = logits.argmax(-1).tolist()
            for i, tok in enumerate(nxt):
                out[i].append(tok)
                seqs[i].append(tok)
            rows = [StepRow([s[-1]], len(s) - 1, self.table(i, len(s))) for i, s in enumerate(seqs)]
            logits = self.step(rows)
        return out, first_logits


def hf_model(path):
    import transformers
    return transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def test_config_reads_family(checkpoint):
    cfg = ModelConfig.from_dir(checkpoint)
    assert cfg.family in {"llama", "mistral", "qwen2", "qwen3"}
    assert cfg.head_dim * cfg.num_attention_heads in (cfg.hidden_size, 4 * 32, 4 * 24)


def test_greedy_and_logits_match_transformers(checkpoint):
    ours = load_model(checkpoint, "float32")
    ref = hf_model(checkpoint)
    batch = prompts(ours.config.vocab_size)
    tokens, first_logits = PagedGreedy(ours).generate(batch, NEW_TOKENS)
    for i, prompt in enumerate(batch):
        ids = torch.tensor([prompt])
        with torch.no_grad():
            ref_logits = ref(ids).logits[0, -1]
            ref_tokens = ref.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS,
                                      do_sample=False, eos_token_id=None, pad_token_id=0)[0, len(prompt):].tolist()
        torch.testing.assert_close(first_logits[i], ref_logits, atol=1e-4, rtol=0)
        assert tokens[i] == ref_tokens, f"prompt {i}: greedy continuation differs from transformers"


def test_prefill_on_cached_prefix_equals_full_prefill(checkpoint):
    model = load_model(checkpoint, "float32")
    prompt = prompts(model.config.vocab_size)[3]          # 17 tokens
    full = PagedGreedy(model)
    full_tokens, _ = full.generate([prompt], 8)
    split = PagedGreedy(model)
    split.step([StepRow(prompt[:9], 0, split.table(0, 9))])  # prefix fills blocks 1-3 (partly)
    logits = split.step([StepRow(prompt[9:], 9, split.table(0, len(prompt)))])
    seq, out = list(prompt), []
    for _ in range(8):
        tok = int(logits.argmax(-1))
        out.append(tok)
        seq.append(tok)
        logits = split.step([StepRow([tok], len(seq) - 1, split.table(0, len(seq)))])
    assert out == full_tokens[0]


def test_unsupported_architecture_is_a_clear_error():
    with pytest.raises(ValueError, match="supported architectures are LlamaForCausalLM"):
        ModelConfig.from_dict({"architectures": ["GPT2LMHeadModel"], "num_attention_heads": 4})


def test_missing_tensor_is_named(checkpoint, tmp_path):
    import shutil
    from safetensors.torch import load_file, save_file
    bad = tmp_path / "bad"
    shutil.copytree(checkpoint, bad)
    state = load_file(bad / "model.safetensors")
    del state["model.layers.1.mlp.up_proj.weight"]
    save_file(state, bad / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="model.layers.1.mlp.up_proj.weight"):
        load_model(bad)
