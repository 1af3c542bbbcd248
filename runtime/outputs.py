"""What a generation request returns, with vLLM's names: plain dataclasses, no tensors.

Log probabilities follow vLLM's layout:
- `CompletionOutput.logprobs`: one dict per generated token, token id -> Logprob. It holds the
  sampled token and the top-k tokens (ranks 1..k); so k or k + 1 entries.
- `RequestOutput.prompt_logprobs`: one entry per prompt token; the first is None (nothing
  predicts the first token), then one dict per prompt token, laid out as above.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Logprob:
    """The log probability of one token.

    logprob: natural-log probability of the token.
    rank: 1 + the number of vocabulary tokens with a strictly greater logprob (1 = most likely).
    decoded_token: the token's text, when detokenized.
    """

    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


# Per position: token id -> Logprob.
SampleLogprobs = list[dict[int, Logprob]]
# As above, with None for the first prompt token.
PromptLogprobs = list[dict[int, Logprob] | None]


@dataclass
class CompletionOutput:
    """One output sequence of a request.

    index: position of this sequence among the request's n outputs.
    text: generated text so far (empty when detokenize is False).
    token_ids: generated token ids so far.
    cumulative_logprob: sum of the sampled tokens' logprobs; None when logprobs were not requested.
    logprobs: per generated token, the sampled and top tokens' Logprobs; None when not requested.
    finish_reason: None while running, then "stop" (eos, stop string or stop token) or "length"
        (max_tokens or the model's length), or "abort".
    stop_reason: the stop string or stop token id that ended the sequence; None for eos,
        length or a still running sequence.
    """

    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    logprobs: SampleLogprobs | None
    finish_reason: str | None = None
    stop_reason: int | str | None = None

    def finished(self) -> bool:
        return self.finish_reason is not None


@dataclass
class RequestMetrics:
    """Timestamps of a request's life, in seconds since the epoch (time.time()).

    Fields other than arrival_time stay None until the event happens.
    """

    arrival_time: float
    first_scheduled_time: float | None = None
    first_token_time: float | None = None
    last_token_time: float | None = None
    finished_time: float | None = None


@dataclass
class RequestOutput:
    """Everything a request has produced so far (cumulative, as in vLLM).

    request_id: the id given when the request was added.
    prompt: the prompt text, or None when the request gave token ids only.
    prompt_token_ids: the prompt's token ids.
    prompt_logprobs: see the module docstring; None when not requested.
    outputs: the n CompletionOutputs, ordered by index.
    finished: True once every output has finished.
    metrics: the request's timestamps.
    """

    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    prompt_logprobs: PromptLogprobs | None
    outputs: list[CompletionOutput]
    finished: bool
    metrics: RequestMetrics | None = None
    # Tokens of the prompt served from the prefix cache; None when unknown.
    num_cached_tokens: int | None = field(default=None)
