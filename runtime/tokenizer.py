"""Text <-> token ids, on the `tokenizers` library alone.

`Tokenizer.from_dir` reads a Hugging Face tokenizer folder (tokenizer.json, tokenizer_config.json,
chat_template.jinja, chat_templates/*.jinja, special_tokens_map.json, and generation_config.json /
config.json for the stop ids) and gives the same ids, decoded text and chat prompts as transformers'
AutoTokenizer on that folder, without importing transformers. Where transformers 5 departs from
tokenizer.json (it rebuilds a LlamaTokenizer's pre-tokenizer and decoder from the class) we follow it.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import tokenizers
from tokenizers import decoders, pre_tokenizers

from runtime.chat_template import ChatTemplates

# The named special tokens transformers passes to a chat template as strings (SPECIAL_TOKENS_ATTRIBUTES).
_NAMED_SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


class Tokenizer:
    """A checkpoint's tokenizer: encode, decode, chat prompts, special ids.

    Built with `Tokenizer.from_dir(path)`. Ids, decoded text and rendered chat prompts equal what
    transformers' AutoTokenizer gives for the same folder.
    """

    def __init__(self, backend: tokenizers.Tokenizer, *, special_tokens: Mapping[str, str],
                 chat_templates: ChatTemplates, eos_token_ids: Sequence[int] = (),
                 clean_up_tokenization_spaces: bool = False) -> None:
        self._backend = backend
        self.special_tokens = dict(special_tokens)  # e.g. {"bos_token": "<s>", "eos_token": "</s>"}
        self.chat_templates = chat_templates
        self._clean_up = clean_up_tokenization_spaces
        self.bos_token_id = self._id_of(self.special_tokens.get("bos_token"))
        self.eos_token_id = self._id_of(self.special_tokens.get("eos_token"))
        self.pad_token_id = self._id_of(self.special_tokens.get("pad_token"))
        ids = ([self.eos_token_id] if self.eos_token_id is not None else []) + list(eos_token_ids)
        self.eos_token_ids: list[int] = list(dict.fromkeys(ids))  # the tokenizer's eos first, then the configs'

    @classmethod
    def from_dir(cls, path: str | Path, extra_eos_token_ids: Iterable[int] = ()) -> Tokenizer:
        """Load the tokenizer in `path`; `extra_eos_token_ids` adds stop ids to those the folder names."""
        path = Path(path)
        if not (path / "tokenizer.json").is_file():
            raise ValueError(f"No tokenizer.json in {path}; point at a Hugging Face checkpoint's folder "
                             "or an artifact's tokenizer/ folder.")
        backend = tokenizers.Tokenizer.from_file(str(path / "tokenizer.json"))
        config = _read_json(path / "tokenizer_config.json")
        is_bpe = isinstance(backend.model, tokenizers.models.BPE)
        _follow_transformers_pipeline(backend, config)

        special_tokens: dict[str, str] = {}
        for key, value in config.items():
            # named tokens may be AddedToken dicts; model-specific ones ("image_token") count only as strings
            if (key in _NAMED_SPECIAL_TOKENS and _token_str(value) is not None) or (
                    key.endswith("_token") and isinstance(value, str)):
                special_tokens[key] = _token_str(value)
        if "added_tokens_decoder" not in config:  # older folders: special_tokens_map.json wins, as in transformers
            for key, value in _read_json(path / "special_tokens_map.json").items():
                if _token_str(value) is not None:
                    special_tokens[key] = _token_str(value)
        _add_missing_tokens(backend, config, special_tokens)

        eos_ids = list(extra_eos_token_ids)
        for name in ("generation_config.json", "config.json"):
            value = _read_json(path / name).get("eos_token_id")
            eos_ids += [value] if isinstance(value, int) else list(value or [])
        return cls(backend, special_tokens=special_tokens, chat_templates=ChatTemplates.from_dir(path, config),
                   eos_token_ids=eos_ids,
                   clean_up_tokenization_spaces=bool(config.get("clean_up_tokenization_spaces"))
                   and not is_bpe)  # transformers skips the clean-up for BPE models

    @property
    def vocab_size(self) -> int:
        """Number of ids, added tokens included (transformers' len(tokenizer))."""
        return self._backend.get_vocab_size(with_added_tokens=True)

    @property
    def bos_token(self) -> str | None:
        return self.special_tokens.get("bos_token")

    @property
    def eos_token(self) -> str | None:
        return self.special_tokens.get("eos_token")

    @property
    def backend(self) -> tokenizers.Tokenizer:
        """The underlying `tokenizers.Tokenizer` (used by the incremental detokenizer)."""
        return self._backend

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of `text`; with `add_special_tokens` the checkpoint's bos (if any) is prepended."""
        if not isinstance(text, str):
            raise ValueError(f"Can only encode a string, got {type(text).__name__}.")
        return self._backend.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, token_ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Text of `token_ids`; special tokens are left out unless `skip_special_tokens` is False."""
        text = self._backend.decode(list(token_ids), skip_special_tokens=skip_special_tokens)
        return _clean_up_tokenization(text) if self._clean_up else text

    def convert_ids_to_tokens(self, token_ids: int | Sequence[int]) -> str | list[str | None] | None:
        """Vocabulary strings of `token_ids` (None for an id outside the vocabulary)."""
        if isinstance(token_ids, int):
            return self._backend.id_to_token(token_ids)
        return [self._backend.id_to_token(i) for i in token_ids]

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int | None] | None:
        """Ids of vocabulary strings (None for a string not in the vocabulary)."""
        if isinstance(tokens, str):
            return self._backend.token_to_id(tokens)
        return [self._backend.token_to_id(t) for t in tokens]

    def apply_chat_template(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True,
                            chat_template: str | None = None, tools: Sequence[Mapping[str, Any]] | None = None,
                            **kwargs: Any) -> str:
        """Render `messages` into the prompt text, exactly as transformers' apply_chat_template(tokenize=False).

        `chat_template` overrides the checkpoint's template (or names one of several); extra keyword
        arguments (e.g. enable_thinking=False) are passed to the template. Encode the result with
        add_special_tokens=False: the template already writes bos where the model wants it.
        Raises ValueError for malformed messages, a missing template, or a template that rejects the chat.
        """
        template = self.chat_templates.select(chat_template, tools)
        return self.chat_templates.render(template, messages, tools=tools, add_generation_prompt=add_generation_prompt,
                                          variables={**self.special_tokens, **kwargs})

    def _id_of(self, token: str | None) -> int | None:
        return None if token is None else self._backend.token_to_id(token)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _token_str(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string, or an AddedToken dict with "content"."""
    if isinstance(value, Mapping):
        return value.get("content")
    return value if isinstance(value, str) else None


def _follow_transformers_pipeline(backend: tokenizers.Tokenizer, config: Mapping) -> None:
    """Give a SentencePiece-style Llama tokenizer the pre-tokenizer and decoder transformers 5 builds for it.

    Why: transformers 5 builds LlamaTokenizer from the vocabulary and merges alone, with a Metaspace
    pre-tokenizer, replacing the normalizer of older tokenizer.json files (Llama 2, Mistral v0.1). The two
    differ after special tokens written in the text ("<s>[INST]"), which every chat prompt has.
    """
    is_llama = str(config.get("tokenizer_class") or "").removesuffix("Fast") == "LlamaTokenizer"
    if not (is_llama and isinstance(backend.model, tokenizers.models.BPE) and backend.model.byte_fallback):
        return
    add_prefix_space = config.get("add_prefix_space")
    add_prefix_space = True if add_prefix_space is None else bool(add_prefix_space)
    scheme = ("always" if config.get("legacy") else "first") if add_prefix_space else "never"
    backend.normalizer = None
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme, split=False)
    steps = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    backend.decoder = decoders.Sequence(steps + ([decoders.Strip(content=" ", left=1)] if add_prefix_space else []))


def _add_missing_tokens(backend: tokenizers.Tokenizer, config: Mapping, special_tokens: Mapping[str, str]) -> None:
    """Add tokens that tokenizer_config.json declares but tokenizer.json lacks, as transformers does on load."""
    declared = sorted(config.get("added_tokens_decoder", {}).items(), key=lambda item: int(item[0]))
    new = [tokenizers.AddedToken(**{k: v for k, v in token.items() if not k.startswith("_")})
           for _, token in declared if backend.token_to_id(token["content"]) is None]
    new += [tokenizers.AddedToken(token, special=True, normalized=False) for key, token in special_tokens.items()
            if key in _NAMED_SPECIAL_TOKENS and backend.token_to_id(token) is None]
    if new:
        backend.add_tokens(new)


def _clean_up_tokenization(text: str) -> str:
    """transformers' clean_up_tokenization (applied only for non-BPE models that ask for it)."""
    for before, after in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                          (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(before, after)
    return text
