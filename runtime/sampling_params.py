"""Sampling parameters for one generation request, with vLLM's field names, defaults and checks.

`SamplingParams` is a mutable dataclass, as in vLLM: users build one and may change fields
afterwards. It is validated when constructed; call `validate()` again after changing fields
(the engine does so when a request is added), and `verify_vocab()` once the model's
vocabulary size is known.
"""

from __future__ import annotations

import copy
import enum
import math
from dataclasses import dataclass

# Below this temperature a request is sampled greedily (argmax), as in vLLM.
SAMPLING_EPS = 1e-5
# Most log probabilities returned per token (OpenAI's chat API allows 20 top_logprobs).
MAX_LOGPROBS = 20


class SamplingType(enum.IntEnum):
    """How the sampler picks a request's next token."""

    GREEDY = 0  # argmax
    RANDOM = 1  # random draw from the engine's shared generator
    RANDOM_SEED = 2  # random draw from the request's own seeded generator


@dataclass
class SamplingParams:
    """Sampling parameters for text generation (vLLM-compatible).

    n: number of output sequences returned for the prompt.
    best_of: accepted for compatibility; None means n. Must be >= n.
    presence_penalty, frequency_penalty: in [-2, 2]; subtracted once per generated token id
        (presence) or once per occurrence (frequency). Positive values discourage repeats.
    repetition_penalty: > 0; over prompt and generated tokens, positive logits are divided by
        it and negative ones multiplied. 1 disables it.
    temperature: >= 0; below 1e-5 the request is greedy.
    top_p: in (0, 1]; 1 keeps every token.
    top_k: 0 or -1 keeps every token; otherwise the k most likely tokens are kept.
    min_p: in [0, 1]; tokens less likely than min_p times the most likely one are dropped.
    seed: makes sampling reproducible, whatever else is in the batch. -1 means None.
    stop: strings that end generation (a single string becomes a one-element list).
    stop_token_ids: token ids that end generation.
    ignore_eos: keep generating after the end-of-sequence token.
    max_tokens: most tokens generated per sequence; None means up to the model's length.
    min_tokens: fewest tokens generated before eos or stop_token_ids may be produced.
    logprobs: number of top log probabilities returned per generated token (the sampled token
        is always included); None returns none. At most 20.
    prompt_logprobs: the same for every prompt token.
    detokenize, skip_special_tokens, spaces_between_special_tokens,
    include_stop_str_in_output: how output text is produced.
    logit_bias: token id -> bias in [-100, 100] added to that token's logit.
    """

    n: int = 1
    best_of: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: int | None = None
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    ignore_eos: bool = False
    max_tokens: int | None = 16
    min_tokens: int = 0
    logprobs: int | None = None
    prompt_logprobs: int | None = None
    detokenize: bool = True
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    include_stop_str_in_output: bool = False
    logit_bias: dict[int, float] | None = None

    def __post_init__(self) -> None:
        if self.seed == -1:
            self.seed = None
        if self.stop is None:
            self.stop = []
        elif isinstance(self.stop, str):
            self.stop = [self.stop]
        else:
            self.stop = list(self.stop)
        # Keep order, drop duplicates (as vLLM does).
        self.stop_token_ids = list(dict.fromkeys(self.stop_token_ids or []))
        if self.logprobs is True:
            self.logprobs = 1
        if self.prompt_logprobs is True:
            self.prompt_logprobs = 1
        if self.logit_bias is not None:
            self.logit_bias = _int_keys(self.logit_bias)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field and its allowed range."""
        for name in _FLOAT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number, got {value!r}.")
        _check_int("n", self.n)
        if self.n < 1:
            raise ValueError(f"n must be at least 1, got {self.n}.")
        if self.best_of is not None:
            _check_int("best_of", self.best_of)
            if self.best_of < self.n:
                raise ValueError(
                    f"best_of must be greater than or equal to n, got n={self.n} and "
                    f"best_of={self.best_of}."
                )
        for name in ("presence_penalty", "frequency_penalty"):
            value = getattr(self, name)
            if not -2.0 <= value <= 2.0:
                raise ValueError(f"{name} must be in [-2, 2], got {value}.")
        if not math.isfinite(self.repetition_penalty) or self.repetition_penalty <= 0.0:
            raise ValueError(
                f"repetition_penalty must be a finite number greater than zero, "
                f"got {self.repetition_penalty}."
            )
        if not math.isfinite(self.temperature) or self.temperature < 0.0:
            raise ValueError(
                f"temperature must be a finite non-negative number, got {self.temperature}."
            )
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}.")
        _check_int("top_k", self.top_k)
        if self.top_k < -1:
            raise ValueError(f"top_k must be 0 or -1 (disable), or at least 1, got {self.top_k}.")
        if not 0.0 <= self.min_p <= 1.0:
            raise ValueError(f"min_p must be in [0, 1], got {self.min_p}.")
        if self.seed is not None:
            _check_int("seed", self.seed)
        if self.max_tokens is not None:
            _check_int("max_tokens", self.max_tokens)
            if self.max_tokens < 1:
                raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}.")
        _check_int("min_tokens", self.min_tokens)
        if self.min_tokens < 0:
            raise ValueError(
                f"min_tokens must be greater than or equal to 0, got {self.min_tokens}."
            )
        if self.max_tokens is not None and self.min_tokens > self.max_tokens:
            raise ValueError(
                f"min_tokens must be less than or equal to max_tokens={self.max_tokens}, "
                f"got {self.min_tokens}."
            )
        for name in ("logprobs", "prompt_logprobs"):
            value = getattr(self, name)
            if value is None:
                continue
            _check_int(name, value)
            if not 0 <= value <= MAX_LOGPROBS:
                raise ValueError(
                    f"{name} must be in [0, {MAX_LOGPROBS}] (at most {MAX_LOGPROBS} log "
                    f"probabilities per token are returned), got {value}."
                )
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise ValueError(f"stop must contain only non-empty strings, got {self.stop}.")
        if self.stop and not self.detokenize:
            raise ValueError(
                "stop strings are only supported when detokenize is True. "
                "Set detokenize=True to use stop."
            )
        if not all(_is_int(t) for t in self.stop_token_ids):
            raise ValueError(
                f"stop_token_ids must contain only integers, got {self.stop_token_ids}."
            )
        for token_id, bias in (self.logit_bias or {}).items():
            if not -100.0 <= bias <= 100.0:
                raise ValueError(
                    f"logit_bias values must be in [-100, 100], got {bias} for token {token_id}."
                )
        if self.is_greedy and self.n > 1:
            raise ValueError(
                f"n must be 1 when using greedy sampling (temperature=0), got {self.n}."
            )

    def verify_vocab(self, vocab_size: int) -> None:
        """Raise ValueError if a token id in stop_token_ids or logit_bias is outside the vocabulary."""
        for name, token_ids in (
            ("stop_token_ids", self.stop_token_ids),
            ("logit_bias", list(self.logit_bias or {})),
        ):
            bad = [t for t in token_ids if not 0 <= t < vocab_size]
            if bad:
                raise ValueError(
                    f"{name} contains out-of-vocabulary token ids {bad}; token ids must be in "
                    f"[0, {vocab_size - 1}]."
                )

    @property
    def is_greedy(self) -> bool:
        return self.temperature < SAMPLING_EPS

    @property
    def sampling_type(self) -> SamplingType:
        if self.is_greedy:
            return SamplingType.GREEDY
        if self.seed is not None:
            return SamplingType.RANDOM_SEED
        return SamplingType.RANDOM

    @property
    def has_penalties(self) -> bool:
        """True if any of the repetition, presence or frequency penalties is active."""
        return (
            self.repetition_penalty != 1.0
            or self.presence_penalty != 0.0
            or self.frequency_penalty != 0.0
        )

    def clone(self) -> SamplingParams:
        """A deep copy, so one request's changes never reach another's."""
        return copy.deepcopy(self)


_FLOAT_FIELDS = (
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "temperature",
    "top_p",
    "min_p",
)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(name: str, value: object) -> None:
    if not _is_int(value):
        raise ValueError(f"{name} must be an integer, got {value!r} of type {type(value).__name__}.")


def _int_keys(logit_bias: dict) -> dict[int, float]:
    """Token ids may arrive as strings (JSON object keys); turn them into ints."""
    out: dict[int, float] = {}
    for key, bias in logit_bias.items():
        try:
            token_id = int(key)
        except (TypeError, ValueError):
            raise ValueError(
                f"logit_bias keys must be integer token ids, got {key!r}."
            ) from None
        if isinstance(bias, bool) or not isinstance(bias, (int, float)):
            raise ValueError(f"logit_bias values must be numbers, got {bias!r} for token {key!r}.")
        out[token_id] = float(bias)
    return out
