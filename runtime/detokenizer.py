"""Incremental detokenization: the text each newly generated token adds, as it arrives.

Decoding one token alone is wrong for byte-level and byte-fallback vocabularies: an emoji or a CJK
character may span several tokens, and SentencePiece decoders drop the space at a text's start. So,
as in vLLM, we keep two offsets into the generated ids: text is decoded over a short window that
starts at `prefix_offset` (tokens already shown, kept as context), and what it adds beyond the
window's already-shown part (`prefix_offset:read_offset`) is the new piece. A piece that ends in
U+FFFD is an incomplete UTF-8 character and is held back until the next token completes it.
Each step decodes a few tokens, never the whole sequence.
"""
from __future__ import annotations

from collections.abc import Sequence

from runtime.tokenizer import Tokenizer

_REPLACEMENT_CHAR = "\ufffd"


class IncrementalDetokenizer:
    """Turns one sequence's generated ids into text, token by token.

    The pieces returned by `add_token` (plus `flush()` at the end) concatenate to
    `tokenizer.decode(generated_ids, skip_special_tokens)`: the generated text decoded on its own, as
    transformers users decode `output_ids[len(prompt):]`. `prompt_token_ids` is accepted for vLLM
    parity and does not change the text.
    """

    def __init__(self, tokenizer: Tokenizer, prompt_token_ids: Sequence[int] | None = None,
                 skip_special_tokens: bool = True) -> None:
        self._decode = tokenizer.backend.decode
        self._skip_special_tokens = skip_special_tokens
        self.token_ids: list[int] = []  # generated ids so far
        self.text = ""  # text returned so far
        self._prefix_offset = 0  # window start: shown tokens kept as decoding context
        self._read_offset = 0  # tokens before this are shown
        self._prefix_text = ""  # decode(token_ids[prefix_offset:read_offset])

    def add_token(self, token_id: int) -> str:
        """Append one generated id; return the text it completes ("" while a character is incomplete)."""
        self.token_ids.append(token_id)
        return self._advance(final=False)

    def flush(self) -> str:
        """At the end of a sequence, return any held-back text (an incomplete character decodes as U+FFFD)."""
        return self._advance(final=True)

    def _advance(self, final: bool) -> str:
        window_text = self._decode(self.token_ids[self._prefix_offset:], skip_special_tokens=self._skip_special_tokens)
        if len(window_text) <= len(self._prefix_text) or (window_text.endswith(_REPLACEMENT_CHAR) and not final):
            return ""
        piece = window_text[len(self._prefix_text):]
        self._prefix_offset, self._read_offset = self._read_offset, len(self.token_ids)
        self._prefix_text = self._decode(self.token_ids[self._prefix_offset:self._read_offset],
                                         skip_special_tokens=self._skip_special_tokens)
        self.text += piece
        return piece
