"""Buckets: the static shapes graphs are compiled for, and how a step is fitted onto them.

Design note. A bucket is `prefill(batch, query_len, ctx_blocks)` or `decode(batch, num_blocks)`,
as in vLLM's Gaudi backend; a decode bucket is a prefill bucket with query_len 1, so both are
stored as one `Bucket(kind, batch, query_len, num_blocks)`. A step is padded up to the cheapest
bucket that holds it: padding costs compute, so spacing matters; exponential spacing (powers of
two) bounds the waste to under 2x per dimension with few graphs, linear spacing wastes less but
compiles more, and an explicit list is accepted for measured workloads. A step larger than
every bucket is split: rows beyond the largest batch go to further launches, and a prompt chunk
longer than the largest query_len is cut into consecutive pieces that run in consecutive waves
(a later piece attends to the K/V the earlier one wrote). Everything here is a pure function of
its arguments; the compile stage uses it to decide what to build, the runtime to pick what to run.
"""
from __future__ import annotations

from dataclasses import dataclass

from runtime.model_inputs import StepRow
from runtime.runner import Launch


@dataclass(frozen=True, order=True)
class Bucket:
    kind: str          # "prefill" | "decode"
    batch: int
    query_len: int     # 1 for decode
    num_blocks: int    # block-table width: the context (in blocks) one row may attend to

    @property
    def name(self) -> str:
        if self.kind == "decode":
            return f"decode_b{self.batch}_m{self.num_blocks}"
        return f"prefill_b{self.batch}_q{self.query_len}_m{self.num_blocks}"

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.batch, self.query_len, self.num_blocks)


def exponential(lo: int, hi: int) -> list[int]:
    """Powers of two from lo up to hi, hi always included.

    >>> exponential(1, 24)
    [1, 2, 4, 8, 16, 24]
    """
    values, v = [], max(1, lo)
    while v < hi:
        values.append(v)
        v *= 2
    return values + [hi]


def linear(lo: int, hi: int, step: int) -> list[int]:
    """lo, lo + step, ... up to hi, hi always included.

    >>> linear(8, 30, 8)
    [8, 16, 24, 30]
    """
    return sorted(set(list(range(lo, hi, step)) + [hi]))


@dataclass(frozen=True)
class BucketSpec:
    """What to build: the limits a build was asked for, and the spacing of the buckets under them."""
    max_model_len: int
    block_size: int
    max_num_seqs: int                 # largest decode batch
    max_num_batched_tokens: int       # largest prefill batch * query_len
    max_prefill_batch: int = 4
    min_query_len: int = 32
    strategy: str = "exp"             # "exp" | "linear"
    linear_step: int = 0              # linear spacing step for batch and query_len (0: a quarter of the max)
    prefill_shapes: tuple[tuple[int, int], ...] = ()   # explicit (batch, query_len) list, overrides spacing
    decode_batches: tuple[int, ...] = ()               # explicit decode batch list, overrides spacing
    decode_num_blocks: tuple[int, ...] = ()            # decode block-table widths besides the full one (default: max/4)
    prefill_num_blocks: tuple[int, ...] = ()           # prefill block-table widths besides the full one (default: none)

    def __post_init__(self) -> None:
        if self.strategy not in ("exp", "linear"):
            raise ValueError(f"bucket strategy {self.strategy!r} is unknown; use 'exp' or 'linear'.")
        if self.max_model_len % self.block_size:
            raise ValueError(f"max_model_len ({self.max_model_len}) must be a multiple of block_size "
                             f"({self.block_size}).")
        widths = self.decode_num_blocks + self.prefill_num_blocks
        if any(m < 1 or m > self.max_blocks for m in widths):
            raise ValueError(f"context widths must be between 1 and {self.max_blocks} blocks "
                             f"(max_model_len / block_size); got {list(widths)}.")
        if self.max_num_batched_tokens < self.min_query_len:
            raise ValueError(f"max_num_batched_tokens ({self.max_num_batched_tokens}) is below the smallest "
                             f"prefill query length ({self.min_query_len}); raise it.")

    @property
    def max_blocks(self) -> int:
        return self.max_model_len // self.block_size


def _spaced(spec: BucketSpec, lo: int, hi: int) -> list[int]:
    if spec.strategy == "linear":
        return linear(lo, hi, spec.linear_step or max(1, hi // 4))
    return exponential(lo, hi)


def make_buckets(spec: BucketSpec) -> list[Bucket]:
    """Every bucket a build compiles.

    Prefill buckets attend to the full context (num_blocks = max_blocks), so one graph serves a
    fresh prompt, a chunk of a long one and a prompt over a cached prefix alike, plus any narrower
    widths asked for in prefill_num_blocks; decode buckets come with two context widths, a quarter
    and all of max_model_len (or decode_num_blocks and the full one), since attention cost grows
    with the width a graph was built for, not with the tokens actually in context.

    >>> spec = BucketSpec(max_model_len=256, block_size=16, max_num_seqs=8, max_num_batched_tokens=128)
    >>> [b.name for b in make_buckets(spec)]  # doctest: +NORMALIZE_WHITESPACE
    ['decode_b1_m4', 'decode_b1_m16', 'decode_b2_m4', 'decode_b2_m16', 'decode_b4_m4', 'decode_b4_m16',
     'decode_b8_m4', 'decode_b8_m16', 'prefill_b1_q32_m16', 'prefill_b1_q64_m16', 'prefill_b1_q128_m16',
     'prefill_b2_q32_m16', 'prefill_b2_q64_m16', 'prefill_b4_q32_m16']
    """
    max_blocks = spec.max_blocks
    if spec.prefill_shapes:
        prefill = list(spec.prefill_shapes)
    else:
        max_q = min(spec.max_num_batched_tokens, spec.max_model_len)
        prefill = [(b, q) for b in _spaced(spec, 1, spec.max_prefill_batch)
                   for q in _spaced(spec, spec.min_query_len, max_q) if b * q <= spec.max_num_batched_tokens]
    decode_batches = list(spec.decode_batches) or _spaced(spec, 1, spec.max_num_seqs)
    # the full width is always built, so every sequence up to max_model_len can decode
    decode_blocks = sorted(set(spec.decode_num_blocks or {max(1, max_blocks // 4)}) | {max_blocks})
    prefill_blocks = sorted(set(spec.prefill_num_blocks) | {max_blocks})
    buckets = [Bucket("prefill", b, q, m) for b, q in prefill for m in prefill_blocks]
    buckets += [Bucket("decode", b, 1, m) for b in decode_batches for m in decode_blocks]
    return sorted(set(buckets))


def _blocks_needed(row: StepRow, block_size: int) -> int:
    return -(-(row.start_pos + len(row.token_ids)) // block_size)


def select_bucket(buckets: list[Bucket], kind: str, num_rows: int, query_len: int, num_blocks: int) -> Bucket | None:
    """The cheapest bucket of `kind` that holds the step, or None.

    Cost is padded tokens first (batch * query_len), then attention width.

    >>> bs = [Bucket("decode", 1, 1, 4), Bucket("decode", 4, 1, 4), Bucket("decode", 4, 1, 16)]
    >>> select_bucket(bs, "decode", 3, 1, 5).name
    'decode_b4_m16'
    """
    fits = [b for b in buckets if b.kind == kind and b.batch >= num_rows and b.query_len >= query_len
            and b.num_blocks >= num_blocks]
    return min(fits, key=lambda b: (b.batch * b.query_len, b.batch * b.query_len * b.num_blocks), default=None)


def plan_launches(buckets: list[Bucket], rows: list[StepRow], is_prefill: bool, block_size: int) -> list[Launch]:
    """Cut a step into padded launches, splitting what no bucket holds.

    Example: buckets prefill (b1,q32), (b2,q32) and decode b1/b2; a prefill step of two rows with
    70 and 10 tokens becomes three waves: [row0[0:32], row1] on (b2,q32), [row0[32:64]] on
    (b1,q32), [row0[64:70]] on (b1,q32). Within a wave, rows join a launch while some bucket
    still holds them all.
    """
    kind = "prefill" if is_prefill else "decode"
    candidates = [b for b in buckets if b.kind == kind]
    if not candidates:
        raise ValueError(f"the artifact has no {kind} buckets; rebuild it with some.")
    max_q = max(b.query_len for b in candidates)
    # split each row into consecutive pieces of at most max_q tokens: piece w runs in wave w
    pieces: list[list[tuple[int, StepRow]]] = []
    for i, row in enumerate(rows):
        for w, start in enumerate(range(0, len(row.token_ids), max_q)):
            piece = StepRow(row.token_ids[start:start + max_q], row.start_pos + start, row.block_table)
            if w == len(pieces):
                pieces.append([])
            pieces[w].append((i, piece))
    launches = []
    for wave in pieces:
        group: list[tuple[int, StepRow]] = []
        bucket = None
        for item in wave:   # grow the launch while some bucket still holds it
            fit = _fit(candidates, kind, group + [item], block_size)
            if fit is None and group:
                launches.append(_launch(group, bucket))
                group, fit = [], _fit(candidates, kind, [item], block_size)
            if fit is None:
                q, m = len(item[1].token_ids), _blocks_needed(item[1], block_size)
                raise ValueError(f"no {kind} bucket holds a row of {q} tokens over {m} blocks; "
                                 "rebuild the artifact with a larger max_model_len.")
            group, bucket = group + [item], fit
        launches.append(_launch(group, bucket))
    return launches


def _fit(candidates: list[Bucket], kind: str, group: list[tuple[int, StepRow]], block_size: int) -> Bucket | None:
    q = max(len(p.token_ids) for _, p in group)
    m = max(_blocks_needed(p, block_size) for _, p in group)
    return select_bucket(candidates, kind, len(group), q, m)


def _launch(group: list[tuple[int, StepRow]], bucket: Bucket) -> Launch:
    return Launch([i for i, _ in group], [p for _, p in group], bucket.shape, bucket.name)
