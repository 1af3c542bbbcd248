"""Log probabilities in the two wire formats: legacy completions and chat.

completions: {"tokens": [...], "token_logprobs": [...], "top_logprobs": [{token: logprob}, ...],
              "text_offset": [...]}
chat:        {"content": [{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob",
              "bytes"}, ...]}, ...]}
Input is the engine's layout: per position, a dict token id -> Logprob holding the chosen token
and the top-k (see runtime/outputs.py). -inf is clamped to -9999.0, as vLLM does, so the JSON
stays valid.
"""
from __future__ import annotations

from collections.abc import Callable

from runtime.outputs import Logprob

_MIN_LOGPROB = -9999.0


def _clamp(value: float) -> float:
    return max(value, _MIN_LOGPROB)


TokenNamer = Callable[[int, "Logprob | None"], str]


def token_namer(tokenizer, as_token_ids: bool = False) -> TokenNamer:
    """How tokens are shown: their text, or "token_id:<id>" (vLLM's return_tokens_as_token_ids),
    which stays exact where one token is only part of a UTF-8 character."""
    def name(token_id: int, logprob: Logprob | None) -> str:
        if as_token_ids:
            return f"token_id:{token_id}"
        if logprob is not None and logprob.decoded_token is not None:
            return logprob.decoded_token
        return tokenizer.decode([token_id], skip_special_tokens=False)
    return name


def _top(step: dict[int, Logprob] | None, num_top: int) -> list[tuple[int, Logprob]]:
    """The step's top entries by rank (the chosen token may rank below num_top: then it is dropped)."""
    if not step:
        return []
    ranked = sorted(step.items(), key=lambda kv: (kv[1].rank or 0, -kv[1].logprob))
    return [(tid, lp) for tid, lp in ranked if lp.rank is None or lp.rank <= num_top][:num_top]


def completion_logprobs(token_ids: list[int], steps: list[dict[int, Logprob] | None],
                        num_top: int, name: TokenNamer, initial_text_offset: int = 0) -> dict:
    """Completions-format logprobs for `token_ids`; steps[i] belongs to token_ids[i] (None: unknown)."""
    tokens, token_logprobs, top_logprobs, text_offset = [], [], [], []
    offset = initial_text_offset
    for token_id, step in zip(token_ids, steps):
        chosen = step.get(token_id) if step else None
        text = name(token_id, chosen)
        tokens.append(text)
        text_offset.append(offset)
        offset += len(text)
        if chosen is None:
            token_logprobs.append(None)
            top_logprobs.append(None)
            continue
        token_logprobs.append(_clamp(chosen.logprob))
        # the chosen token first, then the top-k, as vLLM returns them
        top = {text: _clamp(chosen.logprob)}
        for tid, lp in _top(step, num_top):
            top.setdefault(name(tid, lp), _clamp(lp.logprob))
        top_logprobs.append(top)
    return {"text_offset": text_offset, "token_logprobs": token_logprobs, "tokens": tokens,
            "top_logprobs": top_logprobs}


def chat_logprobs(token_ids: list[int], steps: list[dict[int, Logprob]], num_top: int,
                  name: TokenNamer) -> dict:
    """Chat-format logprobs ({"content": [...]}) for `token_ids`."""
    content = []
    for token_id, step in zip(token_ids, steps):
        chosen = step.get(token_id)
        text = name(token_id, chosen)
        content.append({
            "token": text,
            "logprob": _clamp(chosen.logprob) if chosen is not None else _MIN_LOGPROB,
            "bytes": list(text.encode("utf-8")),
            "top_logprobs": [
                {"token": (t := name(tid, lp)), "logprob": _clamp(lp.logprob),
                 "bytes": list(t.encode("utf-8"))}
                for tid, lp in _top(step, num_top)
            ],
        })
    return {"content": content}
