"""Batched next-token sampling over a step's logits, one row per running sequence.

Order of operations, as in vLLM's v1 sampler:
  1. logprobs are taken from the RAW logits (log_softmax before any of the steps below;
     vLLM's default logprobs_mode "raw_logprobs"), so they describe the model, not the
     request's sampling settings;
  2. logit_bias; 3. min_tokens (eos and stop_token_ids masked until min_tokens are generated);
  4. repetition penalty (prompt + output tokens), then frequency and presence penalties
     (output tokens);
  5. greedy rows (temperature < 1e-5) take the argmax here;
  6. random rows: temperature, min_p, top_k, top_p, then one draw.

A random draw is argmax(probs / q) with q ~ Exp(1) per vocabulary entry, which picks token i
with probability probs[i]. A seeded sequence draws q from its own generator, advanced only by
its own draws, so its tokens do not depend on what else is in the batch. Its noise is drawn on
its generator's device (CPU by default) and then moved to the logits' device, so one seed gives
one stream on every target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from runtime.outputs import Logprob
from runtime.sampling_params import SamplingParams

_MASK_64 = (1 << 64) - 1


def make_generator(
    seed: int | None, index: int = 0, device: str | torch.device = "cpu"
) -> torch.Generator | None:
    """The random stream of output sequence `index` of a request seeded with `seed`.

    None when seed is None (the sequence uses the engine's shared generator). Sequence 0 uses
    `seed` itself; sequence i > 0 uses a 64-bit mix of (seed, i), so the n sequences of one
    request differ, and none collides with sequence 0 of the request seeded seed + i.
    Create it once per sequence and pass the same object at every step.
    """
    if seed is None:
        return None
    value = seed & _MASK_64
    if index:
        value = _splitmix64(value ^ _splitmix64(index))
    return torch.Generator(device=device).manual_seed(value)


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK_64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK_64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK_64
    return x ^ (x >> 31)


@dataclass
class SamplingMetadata:
    """Per-step sampling inputs for a batch of B rows; build with `SamplingMetadata.build`.

    Optional tensors are None when no row needs them, so the common case costs nothing.
    """

    params: list[SamplingParams]  # [B]
    generators: list[torch.Generator | None]  # [B]; None: use the sampler's shared generator
    temperature: torch.Tensor  # [B] float32; 1.0 on greedy rows
    is_greedy: torch.Tensor  # [B] bool
    top_k: torch.Tensor | None  # [B] int64; 0 = off
    top_p: torch.Tensor | None  # [B] float32
    min_p: torch.Tensor | None  # [B] float32
    logit_bias: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None  # (rows, token ids, bias)
    min_tokens_mask: tuple[torch.Tensor, torch.Tensor] | None  # (rows, token ids) set to -inf
    output_ids: torch.Tensor | None  # [B, max_output_len] int64, padded with -1
    prompt_ids: torch.Tensor | None  # [B, max_prompt_len] int64, padded with -1
    repetition_penalty: torch.Tensor | None  # [B] float32; None when every row uses 1.0
    frequency_penalty: torch.Tensor | None  # [B] float32
    presence_penalty: torch.Tensor | None  # [B] float32

    @property
    def all_greedy(self) -> bool:
        return all(p.is_greedy for p in self.params)

    @classmethod
    def build(
        cls,
        params: Sequence[SamplingParams],
        prompt_token_ids: Sequence[Sequence[int]],
        output_token_ids: Sequence[Sequence[int]],
        generators: Sequence[torch.Generator | None] | None = None,
        eos_token_ids: Sequence[int] = (),
        device: str | torch.device = "cpu",
    ) -> SamplingMetadata:
        """Gather the per-row state of one step into tensors on `device`.

        params, prompt_token_ids, output_token_ids, generators: one entry per logits row.
        generators[i] must be the sequence's own `make_generator(seed, index)` (kept across
        steps) when params[i].seed is set and the row is not greedy.
        eos_token_ids: the model's end-of-sequence ids, masked with stop_token_ids while a row
        has generated fewer than min_tokens tokens (whether or not ignore_eos is set).
        """
        params = list(params)
        num_rows = len(params)
        generators = list(generators) if generators is not None else [None] * num_rows
        if not len(prompt_token_ids) == len(output_token_ids) == len(generators) == num_rows:
            raise ValueError("params, prompt_token_ids, output_token_ids and generators differ in length.")
        for i, p in enumerate(params):
            if p.seed is not None and not p.is_greedy and generators[i] is None:
                raise ValueError(f"row {i} has seed={p.seed} but no generator; use make_generator().")

        def column(attr: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:  # [B]
            return torch.tensor([getattr(p, attr) for p in params], dtype=dtype, device=device)

        sampled = [p for p in params if not p.is_greedy]
        top_k = column("top_k", torch.int64) if any(p.top_k > 0 for p in sampled) else None
        top_p = column("top_p") if any(p.top_p < 1.0 for p in sampled) else None
        min_p = column("min_p") if any(p.min_p > 0.0 for p in sampled) else None

        bias = [(i, t, b) for i, p in enumerate(params) for t, b in (p.logit_bias or {}).items()]
        logit_bias = None
        if bias:
            rows, token_ids, values = zip(*bias)
            logit_bias = (_longs(rows, device), _longs(token_ids, device),
                          torch.tensor(values, dtype=torch.float32, device=device))

        masked = [
            (i, t) for i, p in enumerate(params) if len(output_token_ids[i]) < p.min_tokens
            for t in dict.fromkeys([*p.stop_token_ids, *eos_token_ids])
        ]
        min_tokens_mask = None
        if masked:
            rows, token_ids = zip(*masked)
            min_tokens_mask = (_longs(rows, device), _longs(token_ids, device))

        output_ids = prompt_ids = repetition = frequency = presence = None
        if any(p.has_penalties for p in params):
            output_ids = _pad(output_token_ids, device)
            frequency, presence = column("frequency_penalty"), column("presence_penalty")
            if any(p.repetition_penalty != 1.0 for p in params):
                prompt_ids, repetition = _pad(prompt_token_ids, device), column("repetition_penalty")

        return cls(
            params=params,
            generators=generators,
            # greedy rows divide by 1.0: their random draw is computed, then discarded
            temperature=torch.tensor(
                [1.0 if p.is_greedy else p.temperature for p in params], device=device
            ),
            is_greedy=column("is_greedy", torch.bool),
            top_k=top_k,
            top_p=top_p,
            min_p=min_p,
            logit_bias=logit_bias,
            min_tokens_mask=min_tokens_mask,
            output_ids=output_ids,
            prompt_ids=prompt_ids,
            repetition_penalty=repetition,
            frequency_penalty=frequency,
            presence_penalty=presence,
        )


@dataclass
class SamplerOutput:
    """One step's result, plain Python values.

    sampled_token_ids: [B] the next token of each row.
    logprobs: [B] per row, a dict token id -> Logprob holding the sampled token and the
        params.logprobs most likely tokens (raw model logprobs; decoded_token left None for the
        detokenizer), or None when the row did not ask for logprobs.
    """

    sampled_token_ids: list[int]
    logprobs: list[dict[int, Logprob] | None]


class Sampler:
    """Picks each row's next token; see the module docstring for the order of operations.

    seed: seeds the shared generator used by rows without their own seed; None draws a fresh
    random seed.
    device: where the shared generator draws; the logits' device avoids copying its noise.
    Seeded rows draw on their own generator's device (CPU from make_generator by default).
    """

    def __init__(self, seed: int | None = None, device: str | torch.device = "cpu") -> None:
        self.generator = torch.Generator(device=device)
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed & _MASK_64)

    def __call__(self, logits: torch.Tensor, metadata: SamplingMetadata) -> SamplerOutput:
        """logits: [B, vocab] (any float dtype; the caller's tensor is not modified)."""
        num_logprobs = [p.logprobs for p in metadata.params]
        raw_logprobs = None
        if any(n is not None for n in num_logprobs):
            raw_logprobs = torch.log_softmax(logits.float(), dim=-1)  # [B, V]

        logits = process_logits(logits, metadata)
        sampled = logits.argmax(dim=-1)  # [B]
        if not metadata.all_greedy:
            random_sampled = self._sample_random(logits, metadata)
            sampled = torch.where(metadata.is_greedy, sampled, random_sampled)

        token_ids = sampled.tolist()
        row_logprobs: list[dict[int, Logprob] | None] = [None] * len(token_ids)
        if raw_logprobs is not None:
            rows = [i for i, n in enumerate(num_logprobs) if n is not None]
            dicts = logprob_dicts(
                raw_logprobs[rows], sampled[rows], [num_logprobs[i] for i in rows]
            )
            for i, d in zip(rows, dicts):
                row_logprobs[i] = d
        return SamplerOutput(sampled_token_ids=token_ids, logprobs=row_logprobs)

    def _sample_random(self, logits: torch.Tensor, metadata: SamplingMetadata) -> torch.Tensor:
        logits = logits / metadata.temperature.unsqueeze(1)  # [B, V]
        if metadata.min_p is not None:
            probs = logits.softmax(dim=-1)
            threshold = probs.amax(dim=-1, keepdim=True) * metadata.min_p.unsqueeze(1)  # [B, 1]
            logits = logits.masked_fill(probs < threshold, float("-inf"))
        if metadata.top_k is not None or metadata.top_p is not None:
            logits = _apply_top_k_top_p(logits, metadata.top_k, metadata.top_p)
        probs = logits.softmax(dim=-1)  # [B, V]
        noise = self._exponential_noise(probs.shape, metadata, probs.device)
        return (probs / noise).argmax(dim=-1)  # [B]

    def _exponential_noise(
        self, shape: torch.Size, metadata: SamplingMetadata, device: torch.device
    ) -> torch.Tensor:
        """q ~ Exp(1), [B, V]: seeded rows from their own generators, the others from the shared one."""
        num_rows, vocab_size = shape
        noise = torch.ones(num_rows, vocab_size, device=device)  # greedy rows: unused
        pairs = zip(metadata.params, metadata.generators)
        rows = [(i, g) for i, (p, g) in enumerate(pairs) if not p.is_greedy]
        shared_rows = [i for i, g in rows if g is None]
        if shared_rows:
            shared = torch.empty(len(shared_rows), vocab_size, device=self.generator.device)
            noise[shared_rows] = shared.exponential_(generator=self.generator).to(device)
        for i, g in rows:
            if g is not None:  # Python loop: each seeded row advances only its own generator
                row = torch.empty(vocab_size, device=g.device).exponential_(generator=g)
                noise[i] = row.to(device)
        # Exp(1) can return exactly 0; 0/0 would be NaN, which argmax would pick.
        return noise.clamp_(min=torch.finfo(torch.float32).tiny)


def process_logits(logits: torch.Tensor, metadata: SamplingMetadata) -> torch.Tensor:
    """logit_bias, min_tokens, then penalties: the logits [B, V] greedy rows take the argmax of.

    Returns a new float32 tensor; `logits` is left unchanged.
    """
    logits = logits.to(torch.float32, copy=True)  # [B, V]
    if metadata.logit_bias is not None:
        rows, token_ids, bias = metadata.logit_bias
        logits.index_put_((rows, token_ids), bias, accumulate=True)
    if metadata.min_tokens_mask is not None:
        logits[metadata.min_tokens_mask] = float("-inf")
    if metadata.output_ids is not None:
        logits = _apply_penalties(logits, metadata)
    return logits


def _apply_penalties(logits: torch.Tensor, metadata: SamplingMetadata) -> torch.Tensor:
    """Repetition (prompt + output), frequency and presence (output) penalties, as in vLLM."""
    output_counts = _token_counts(metadata.output_ids, logits)  # [B, V] occurrences in the output
    if metadata.repetition_penalty is not None:
        seen = (_token_counts(metadata.prompt_ids, logits) + output_counts) > 0  # [B, V]
        penalty = torch.where(seen, metadata.repetition_penalty.unsqueeze(1), 1.0)  # [B, V]
        logits = torch.where(logits > 0, logits / penalty, logits * penalty)
    logits = logits - metadata.frequency_penalty.unsqueeze(1) * output_counts
    return logits - metadata.presence_penalty.unsqueeze(1) * (output_counts > 0)


def _apply_top_k_top_p(
    logits: torch.Tensor, top_k: torch.Tensor | None, top_p: torch.Tensor | None
) -> torch.Tensor:
    """Keep each row's top_k tokens (0 = all) and its smallest set with mass >= top_p."""
    vocab_size = logits.shape[-1]
    if top_p is None:  # top-k alone needs no full sort
        is_off = (top_k <= 0) | (top_k >= vocab_size)  # [B]
        k = torch.where(is_off, 1, top_k)  # [B]
        top_values = logits.topk(int(k.max()), dim=-1).values  # [B, max_k] descending
        kth_largest = top_values.gather(1, (k - 1).unsqueeze(1))  # [B, 1]
        kth_largest = kth_largest.masked_fill(is_off.unsqueeze(1), float("-inf"))
        return logits.masked_fill(logits < kth_largest, float("-inf"))
    sorted_logits, sorted_ids = logits.sort(dim=-1)  # [B, V] ascending
    if top_k is not None:
        k = torch.where(top_k <= 0, vocab_size, top_k.clamp(max=vocab_size))  # [B]
        kth_largest = sorted_logits.gather(1, (vocab_size - k).unsqueeze(1))  # [B, 1]
        sorted_logits = sorted_logits.masked_fill(sorted_logits < kth_largest, float("-inf"))
    if top_p is not None:
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)  # [B, V]
        # Drop the least likely tokens whose total mass is at most 1 - top_p; top_p = 1 drops none.
        dropped_mass = torch.where(top_p >= 1.0, -1.0, 1.0 - top_p).unsqueeze(1)  # [B, 1]
        drop = cumulative <= dropped_mass
        drop[:, -1] = False  # always keep the most likely token
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.empty_like(logits).scatter_(1, sorted_ids, sorted_logits)


def logprob_dicts(
    logprobs: torch.Tensor, token_ids: torch.Tensor, num_logprobs: Sequence[int]
) -> list[dict[int, Logprob]]:
    """Per row: {token_ids[i]: its Logprob, then the num_logprobs[i] most likely tokens}.

    logprobs: [N, V] log-probabilities; token_ids: [N] the chosen (or actual next) tokens.
    The chosen token's rank is 1 + the number of tokens with a strictly greater logprob; the
    top tokens get ranks 1..k in order.
    """
    if logprobs.shape[0] == 0:
        return []
    token_ids = token_ids.to(logprobs.device, torch.int64)
    chosen = logprobs.gather(1, token_ids.unsqueeze(1))  # [N, 1]
    ranks = ((logprobs > chosen).sum(dim=-1) + 1).tolist()  # [N]
    top_values, top_ids = logprobs.topk(max(num_logprobs), dim=-1)  # [N, max_k]
    top_values, top_ids = top_values.tolist(), top_ids.tolist()
    out = []
    for i, (token_id, value) in enumerate(zip(token_ids.tolist(), chosen.squeeze(1).tolist())):
        d = {token_id: Logprob(value, ranks[i])}
        for j in range(num_logprobs[i]):
            d.setdefault(top_ids[i][j], Logprob(top_values[i][j], j + 1))
        out.append(d)
    return out


def compute_prompt_logprobs(
    logits: torch.Tensor, next_token_ids: Sequence[int], num_logprobs: int
) -> list[dict[int, Logprob]]:
    """Raw logprobs of prompt tokens: logits [T, V] at prompt positions p..p+T-1, next_token_ids
    the prompt tokens at p+1..p+T. Returns T dicts; the engine puts None in front for token 0."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)  # [T, V]
    targets = torch.tensor(list(next_token_ids), dtype=torch.int64)
    return logprob_dicts(logprobs, targets, [num_logprobs] * len(targets))


def _longs(values: Sequence[int], device: str | torch.device) -> torch.Tensor:
    return torch.tensor(list(values), dtype=torch.int64, device=device)


def _pad(rows: Sequence[Sequence[int]], device: str | torch.device) -> torch.Tensor:
    """[B, max_len] int64 token ids, padded with -1."""
    width = max((len(r) for r in rows), default=0)
    padded = [[*r, *[-1] * (width - len(r))] for r in rows]
    return torch.tensor(padded, dtype=torch.int64, device=device)


def _token_counts(ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """ids [B, L] padded with -1 -> [B, V] float32 count of each token id per row."""
    valid = (ids >= 0).to(logits.dtype)  # [B, L]
    return torch.zeros_like(logits).scatter_add_(1, ids.clamp(min=0), valid)
