"""A small, deterministic pre-training loop for the built-in default model, on CPU.

The token stream (every document, bos ... eos, back to back) is cut into windows of seq_len + 1
tokens, on a grid shifted each epoch and visited in a shuffled order, both drawn from a generator
seeded with `seed`: the same seed gives the same batches, the same weights and the same loss.
AdamW with linear warm-up then cosine decay. Float32 throughout: on CPUs without bf16 units
autocast only adds conversions.
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
from tqdm import tqdm


@dataclass(frozen=True)
class TrainingConfig:
    """How the default model is trained; part of the build stamp, so changing it rebuilds."""

    num_steps: int
    batch_size: int = 8
    seq_len: int = 128
    learning_rate: float = 3e-3
    min_learning_rate: float = 3e-4
    warmup_steps: int = 10
    weight_decay: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_steps < 0:
            raise ValueError(f"train steps must be >= 0, got {self.num_steps}; pass 0 for random weights.")
        if self.batch_size < 1 or self.seq_len < 1:
            raise ValueError(f"batch_size and seq_len must be >= 1, got {self.batch_size} and {self.seq_len}.")
        if not 0 < self.min_learning_rate <= self.learning_rate:
            raise ValueError("min_learning_rate must be positive and at most learning_rate; lower it.")

    def as_dict(self) -> dict:
        return asdict(self)

    def learning_rate_at(self, step: int) -> float:
        """Linear warm-up to learning_rate, then cosine decay to min_learning_rate at num_steps."""
        if step < self.warmup_steps:
            return self.learning_rate * (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.num_steps - self.warmup_steps)
        cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return self.min_learning_rate + (self.learning_rate - self.min_learning_rate) * cosine


@dataclass(frozen=True)
class TrainingResult:
    final_loss: float   # mean training loss over the last few steps (nan when no step ran)
    elapsed_s: float
    num_tokens: int     # tokens the model was trained on, repeats counted


def default_num_threads(max_threads: int = 2) -> int:
    """Up to `max_threads` CPU threads, but no more than the cores other processes leave idle; at least 1.

    Why: on a shared machine, an OpenMP thread waiting for a busy core stalls every step (two threads on
    two busy cores measured 7x slower than one). The trained weights do not depend on the thread count.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    idle_cores = cores - os.getloadavg()[0] if hasattr(os, "getloadavg") else cores
    return max(1, min(max_threads, cores, round(idle_cores)))


def windows(stream: torch.Tensor, seq_len: int, offset: int) -> torch.Tensor:
    """Non-overlapping [N, seq_len + 1] windows of `stream` from `offset` on (inputs and shifted targets)."""
    n = (stream.numel() - offset - 1) // seq_len
    return stream[offset: offset + n * seq_len + 1].unfold(0, seq_len + 1, seq_len)  # neighbours share an edge token


def batches(token_ids: list[int], seq_len: int, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Endless [batch_size, seq_len + 1] batches, epoch after epoch.

    Each epoch shifts the window grid by a seeded offset and visits its windows in a seeded order,
    so a passage is seen at many places in a window, not always at the same one.
    """
    stream = torch.tensor(token_ids, dtype=torch.long)   # [num_tokens]
    if stream.numel() < seq_len * (batch_size + 1) + 1:
        raise ValueError(f"the corpus has {stream.numel()} tokens, too few for batches of {batch_size} x {seq_len}.")
    generator = torch.Generator().manual_seed(seed)
    while True:
        data = windows(stream, seq_len, offset=int(torch.randint(seq_len, (1,), generator=generator)))
        order = torch.randperm(data.shape[0], generator=generator)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            yield data[order[start: start + batch_size]]


def train(model: torch.nn.Module, token_ids: list[int], config: TrainingConfig) -> TrainingResult:
    """Train a transformers causal LM in place on `token_ids`, showing a tqdm bar with the loss."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]   # norms are not decayed
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=config.learning_rate, betas=(0.9, 0.95))
    model.train()
    recent: list[float] = []
    start = time.perf_counter()
    progress = tqdm(range(config.num_steps), desc="training", unit="step", dynamic_ncols=True)
    batch_iter = batches(token_ids, config.seq_len, config.batch_size, config.seed)
    for step in progress:
        batch = next(batch_iter)                       # [B, T + 1]
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate_at(step)
        logits = model(input_ids=batch[:, :-1]).logits  # [B, T, vocab]
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        recent = (recent + [loss.item()])[-10:]
        progress.set_postfix(loss=f"{loss.item():.3f}", lr=f"{config.learning_rate_at(step):.1e}")
    model.eval()
    final = sum(recent) / len(recent) if recent else float("nan")
    return TrainingResult(final_loss=final, elapsed_s=time.perf_counter() - start,
                          num_tokens=config.num_steps * config.batch_size * config.seq_len)
