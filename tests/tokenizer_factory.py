"""Small tokenizers of every supported family, trained locally and written as the Hugging Face hub writes them.

Each family gets the tokenizer shape its real checkpoints ship:
- llama2, mistral: SentencePiece-style BPE with byte fallback (`▁` for spaces, <0xNN> byte tokens),
  tokenizer_class LlamaTokenizer. llama2 writes the legacy normalizer pipeline (Prepend + Replace) that
  Llama 2 repositories carry; mistral writes the Metaspace pre-tokenizer of newer repositories.
- llama3: byte-level BPE (tiktoken-style regex), PreTrainedTokenizerFast, bos added by the post-processor.
- qwen2, qwen3: byte-level BPE with NFC and Qwen's regex, Qwen2Tokenizer, no bos.
Special tokens are real added tokens in tokenizer.json and listed in tokenizer_config.json's
added_tokens_decoder. qwen3 writes its template to chat_template.jinja, the others into tokenizer_config.json.
Training is deterministic and offline: a fixed built-in corpus with English, code, emoji and CJK.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from tests import tokenizer_templates

FAMILIES = ("llama2", "llama3", "mistral", "qwen2", "qwen3")

CORPUS = """\
The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a single step.
Hello, world! How are you today? I'm fine, thanks; and you're doing well, I hope.
Large language models generate text one token at a time. The server streams each token to the client.
Compile once, serve fast: the runtime loads a manifest, maps the weights and runs the graphs.
def fibonacci(n: int) -> int:
    if n < 2:
        return n
    return fibonacci(n - 1) + fibonacci(n - 2)

for i in range(10):
    print(f"{i}: {fibonacci(i)}")
class Request:
    def __init__(self, request_id, prompt):
        self.request_id = request_id
        self.prompt = prompt
{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
x = [1, 2, 3]; y = {k: v for k, v in zip("abc", x)}  # dict comprehension
Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 1234 2024 3.14159 -7 1e-5
Emoji make people happy 😀 😂 🎉 🚀 ❤️ 👍 🐍 and flags 🇫🇷 🇯🇵 show up in chats 😀🎉.
今天天气很好。我们去公园散步吧。你好，世界！机器学习和人工智能正在改变世界。
日本語のテキストも少し含めます。こんにちは、世界。東京は大きな都市です。
한국어 문장도 있습니다. 안녕하세요 세계.
Ünïcödé accents: café, naïve, résumé, façade, jalapeño, Straße, Ångström.
"""
# Repeated so merges have counts; the rare lines appear once, so their characters stay byte pieces.
_TRAINING_LINES = [line for line in CORPUS.splitlines() if line] * 4 + [
    "The model said: 🤖 beep boop 🦄 and 中文字符 漢字 龍.",
    "Tokenizers split text into pieces; byte fallback covers the rest: ∑ ∫ ≈ ≠ ∞.",
]

_LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# family -> (added tokens in id order as (content, special), bos, eos, pad, extra eos ids' contents)
_SPECIALS: dict[str, tuple[list[tuple[str, bool]], str | None, str, str | None, list[str]]] = {
    "llama2": ([("<unk>", True), ("<s>", True), ("</s>", True)], "<s>", "</s>", None, []),
    "mistral": ([("<unk>", True), ("<s>", True), ("</s>", True), ("[INST]", True), ("[/INST]", True),
                 ("[TOOL_CALLS]", True), ("[AVAILABLE_TOOLS]", True), ("[/AVAILABLE_TOOLS]", True),
                 ("[TOOL_RESULTS]", True), ("[/TOOL_RESULTS]", True)], "<s>", "</s>", None, []),
    "llama3": ([("<|begin_of_text|>", True), ("<|end_of_text|>", True), ("<|reserved_special_token_0|>", True),
                ("<|reserved_special_token_1|>", True), ("<|finetune_right_pad_id|>", True),
                ("<|reserved_special_token_2|>", True), ("<|start_header_id|>", True), ("<|end_header_id|>", True),
                ("<|eom_id|>", True), ("<|eot_id|>", True), ("<|python_tag|>", True)],
               "<|begin_of_text|>", "<|eot_id|>", None, ["<|end_of_text|>", "<|eom_id|>"]),
    "qwen2": ([("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True), ("<tool_call>", False),
               ("</tool_call>", False)], None, "<|im_end|>", "<|endoftext|>", ["<|endoftext|>"]),
    "qwen3": ([("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True), ("<tool_call>", False),
               ("</tool_call>", False), ("<tool_response>", False), ("</tool_response>", False),
               ("<think>", False), ("</think>", False)], None, "<|im_end|>", "<|endoftext|>", ["<|endoftext|>"]),
}
_TEMPLATES = {"llama2": tokenizer_templates.LLAMA2, "llama3": tokenizer_templates.LLAMA3,
              "mistral": tokenizer_templates.MISTRAL, "qwen2": tokenizer_templates.QWEN2,
              "qwen3": tokenizer_templates.QWEN3}


def _train_byte_level(regex: str, nfc: bool) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    if nfc:
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=640, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(_TRAINING_LINES, trainer)
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    return tok


def _train_sentencepiece_style(specials: list[str], legacy_normalizer: bool) -> Tokenizer:
    # Train on `▁`-marked words, then lay the vocabulary out as Llama does: specials, 256 byte tokens, pieces.
    trainer_tok = Tokenizer(models.BPE())
    trainer_tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    # Characters seen in fewer than 4 lines stay out of the vocabulary and encode as byte tokens. The alphabet
    # is forced explicitly because the trainer's own limit_alphabet breaks ties in hash order.
    counts = Counter("".join(_TRAINING_LINES).replace(" ", "▁"))
    alphabet = sorted(ch for ch, n in counts.items() if n >= 4)
    trainer = trainers.BpeTrainer(vocab_size=500, initial_alphabet=alphabet, limit_alphabet=len(alphabet),
                                  show_progress=False)
    trainer_tok.train_from_iterator(_TRAINING_LINES, trainer)
    trained = json.loads(trainer_tok.to_str())["model"]
    pieces = sorted(trained["vocab"], key=trained["vocab"].get)
    layout = specials + [f"<0x{b:02X}>" for b in range(256)] + pieces
    vocab = {piece: i for i, piece in enumerate(layout)}
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    if legacy_normalizer:
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(content=" ", left=1, right=0)])
    return tok


def _added_token_json(content: str, special: bool) -> dict:
    return {"content": content, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False, "special": special}


def train_tokenizer(out_dir: Path, family: str) -> dict:
    """Train `family`'s tokenizer and write tokenizer.json, tokenizer_config.json (and chat_template.jinja).

    Returns {"bos_token_id", "eos_token_id", "extra_eos_token_ids", "pad_token_id", "vocab_size"}:
    the ids a config.json / generation_config.json of that family carries (bos_token_id is
    <|endoftext|> for Qwen, whose tokenizer adds no bos; pad_token_id is None where the family has
    none) and vocab_size counting added tokens, so a model's vocab_size must be at least that.
    """
    if family not in FAMILIES:
        raise ValueError(f"Unknown tokenizer family {family!r}; choose one of {', '.join(FAMILIES)}.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    added, bos, eos, pad, extra_eos = _SPECIALS[family]
    if family in ("llama2", "mistral"):
        tok = _train_sentencepiece_style([content for content, _ in added], legacy_normalizer=family == "llama2")
    else:
        tok = _train_byte_level(_LLAMA3_REGEX if family == "llama3" else _QWEN_REGEX, nfc=family != "llama3")
    tok.add_tokens([AddedToken(content, special=special, normalized=False) for content, special in added])
    ids = {content: tok.token_to_id(content) for content, _ in added}

    if bos is not None:  # llama2, mistral, llama3: the post-processor prepends bos
        template = processors.TemplateProcessing(single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
                                                 special_tokens=[(bos, ids[bos])])
        tok.post_processor = (template if family != "llama3" else processors.Sequence(
            [processors.ByteLevel(trim_offsets=False), template]))
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer_json = json.loads(tok.to_str())
    if family == "llama3":
        tokenizer_json["model"]["ignore_merges"] = True  # as Llama 3's tokenizer.json has it
    (out_dir / "tokenizer.json").write_text(json.dumps(tokenizer_json, ensure_ascii=False, indent=2), encoding="utf-8")

    config: dict = {
        "added_tokens_decoder": {str(ids[content]): _added_token_json(content, special) for content, special in added},
        "bos_token": bos, "eos_token": eos, "pad_token": pad,
        "clean_up_tokenization_spaces": family == "llama3",
        "model_max_length": 131072,
    }
    if family in ("llama2", "mistral"):
        config.update(tokenizer_class="LlamaTokenizer", unk_token="<unk>", legacy=False, add_bos_token=True,
                      add_eos_token=False, use_default_system_prompt=False, padding_side="left")
    elif family == "llama3":
        config.update(tokenizer_class="PreTrainedTokenizerFast", model_input_names=["input_ids", "attention_mask"])
    else:
        config.update(tokenizer_class="Qwen2Tokenizer", unk_token=None, add_prefix_space=False, errors="replace",
                      split_special_tokens=False)
    if family == "qwen3":
        (out_dir / "chat_template.jinja").write_text(_TEMPLATES[family], encoding="utf-8")
    else:
        config["chat_template"] = _TEMPLATES[family]
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False, indent=2), encoding="utf-8")

    return {
        "bos_token_id": ids[bos] if bos is not None else ids["<|endoftext|>"],
        "eos_token_id": ids[eos],
        "extra_eos_token_ids": [ids[content] for content in extra_eos],
        "pad_token_id": ids[pad] if pad is not None else None,
        "vocab_size": tok.get_vocab_size(with_added_tokens=True),
    }
