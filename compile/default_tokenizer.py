"""The built-in default model's tokenizer: Llama 3 style byte-level BPE trained on Python's help topics.

Trained on compile.default_corpus (text that ships with CPython), so nothing is downloaded.
Training is deterministic: topics in a fixed order, the byte alphabet forced, and BPE merges
ordered by count with ties broken by the pair itself.
The written folder has Llama 3's special tokens (after the learned pieces, as Llama 3 places them),
a post-processor that prepends <|begin_of_text|>, and Llama 3 Instruct's chat template, so
transformers' AutoTokenizer and runtime.tokenizer.Tokenizer both read it.
"""
from __future__ import annotations

import json
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from compile.default_corpus import topics

BOS, EOS, EOT = "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"
# Llama 3's special tokens, in its id order; the model stops on <|eot_id|>, <|end_of_text|> and <|eom_id|>.
SPECIAL_TOKENS = (BOS, EOS, "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
                  "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>", "<|start_header_id|>",
                  "<|end_header_id|>", "<|eom_id|>", EOT, "<|python_tag|>")
STOP_TOKENS = (EOT, EOS, "<|eom_id|>")

# Llama 3's pre-tokenizer split (tiktoken's cl100k pattern)
_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Meta-Llama-3-8B-Instruct's chat template: bos, then one header + content + <|eot_id|> per message.
CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)


def train_tokenizer(vocab_size: int) -> Tokenizer:
    """Train the byte-level BPE so that, special tokens included, it has exactly `vocab_size` ids."""
    if vocab_size < 256 + len(SPECIAL_TOKENS) + 1:
        raise ValueError(f"vocab_size {vocab_size} is too small; byte-level BPE needs at least "
                         f"{256 + len(SPECIAL_TOKENS) + 1} ids.")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_SPLIT_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(SPECIAL_TOKENS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(topics().values()), trainer)
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=f"{BOS}:0 $A:0", pair=f"{BOS}:0 $A:0 {BOS}:1 $B:1",
                                      special_tokens=[(BOS, bos_id)]),
    ])
    return tok


def special_token_ids(tok: Tokenizer) -> dict[str, int]:
    return {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}


def save_tokenizer(tok: Tokenizer, out_dir: Path) -> None:
    """Write tokenizer.json and tokenizer_config.json (bos/eos, added tokens, chat template) into `out_dir`."""
    tokenizer_json = json.loads(tok.to_str())
    tokenizer_json["model"]["ignore_merges"] = True  # as Llama 3's tokenizer.json has it
    (out_dir / "tokenizer.json").write_text(json.dumps(tokenizer_json, ensure_ascii=False, indent=2),
                                            encoding="utf-8")
    added = {str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                      "special": True} for t, i in special_token_ids(tok).items()}
    config = {
        "added_tokens_decoder": added, "bos_token": BOS, "eos_token": EOT, "pad_token": None,
        "chat_template": CHAT_TEMPLATE, "clean_up_tokenization_spaces": True,
        "model_input_names": ["input_ids", "attention_mask"], "model_max_length": 1 << 17,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False, indent=2),
                                                   encoding="utf-8")
